package lab

import "context"

// SignedChain downloads (or finds cached) Debian's signed shim and network
// GRUB with lab/mksecureboot.sh and returns the directory holding them as
// shimx64.efi and grubx64.efi, the names netsan serves them under
// (build/lab/secureboot). The packages are unpacked, never installed.
func SignedChain(ctx context.Context) (string, error) {
	return buildScript(ctx, "mksecureboot.sh")
}
