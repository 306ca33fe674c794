// Package assets holds netsan's default boot templates, compiled into the
// binary so that a fresh install boots hosts without any file of its own.
// A templates directory named in the inventory overrides them file by file.
package assets

import "embed"

// Templates are the text/template sources, by path: ipxe/<mode>.ipxe for the
// per-host iPXE scripts (san, local, menu, shell, unknown, linux) and pi/cmdline.txt
// for a Raspberry Pi that mounts its root over iSCSI, grub/grub.cfg (every
// machine's first GRUB file) and grub/linux.cfg (a boot = "linux" host's
// grub/<MAC>.cfg, what a secure_boot host's signed GRUB runs). The iPXE
// templates are executed with a bootmenu.ScriptData, cmdline.txt with a
// bootmenu.CmdlineData, grub/linux.cfg with a bootmenu.GRUBData.
// To change one, copy it to templates/<same path> beside the inventory file
// (e.g. /etc/netsan/templates/ipxe/menu.ipxe) and reload.
//
//go:embed ipxe/*.ipxe pi/cmdline.txt grub/*.cfg
var Templates embed.FS
