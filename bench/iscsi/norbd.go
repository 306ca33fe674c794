//go:build !ceph

package main

import "errors"

func rbdLUNs(string, int64) (*luns, error) {
	return nil, errors.New("-store rbd needs a build with Ceph: bench/rbd/run.sh (go build -tags ceph,pacific)")
}
