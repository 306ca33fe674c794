package cluster_test

import (
	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/cluster"
)

// *ceph.Cluster is the Coordinator serve hands an Elector, in the Ceph
// build and (returning ErrNotBuilt) in the default one.
var _ cluster.Coordinator = (*ceph.Cluster)(nil)
