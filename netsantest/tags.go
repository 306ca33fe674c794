//go:build !ceph

package netsantest

// buildTags are the tags Binary builds netsan with: those of the test
// binary, so that a test built with Ceph support runs a netsan that has it.
const buildTags = ""
