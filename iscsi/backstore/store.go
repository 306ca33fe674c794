// Package backstore holds the bytes behind a logical unit: sparse image files
// and block devices, behind one small interface.
package backstore

// Store is a logical unit's backing storage. Implementations must be safe for
// concurrent use: ReadAt and WriteAt run from several commands at once.
type Store interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Sync returns once every completed write has reached stable storage (fdatasync).
	Sync() error
	// Unmap deallocates [off, off+length): later reads return zeros. Stores that
	// cannot deallocate write zeros instead.
	Unmap(off, length int64) error
	// Size is the store's size in bytes.
	Size() int64
	Close() error
}
