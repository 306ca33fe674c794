//go:build ceph && pacific

package netsantest

const buildTags = "ceph,pacific"
