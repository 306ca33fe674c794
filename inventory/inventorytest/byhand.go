package inventorytest

// ByHand is an inventory as a person writes one, for tests of the edits
// that must keep every byte they do not change: comments above, beside and
// between the tables, odd spacing, indentation and quoting, a sub-table of
// a host, a multi-line array and a comment that looks like a header. Its
// golden image "base" is data/golden/base.img; the pool is .2-.99 and the
// first address free outside it 198.18.0.102.
const ByHand = `# netsan inventory — written by hand
[server]
   address="198.18.0.1"     # odd spacing
data_dir =   "data"

[dhcp]
subnet = "198.18.0.0/24"
range  = [ "198.18.0.2",
           "198.18.0.99" ]   # the pool
router = "198.18.0.100"

[iscsi]
base_iqn='iqn.2026-11.example.lab'

[[image]]
name = "base"
path = "golden/base.img"

# the PC under the desk
# (keep it)
[[host]]
name="desk"
mac = "52:54:00:00:00:01"
ip = "198.18.0.101"
  boot = "local"   # boots from its disk
# chap = { user = "x", secret = "…" }

# the Pi
[[host]]
	name = 'pi'
	mac = "d8:3a:dd:00:00:03"
	boot = "menu"
[host.chap]
user = "pi"
secret = "0123456789abcdef"

## data, below ##
[[target]]
name = "data"
luns = [
  { lun = 0, image = "d.img", size = "1M" },  # [[host]] in a comment
]
[[target.acl]]
initiator = "iqn.2026-11.example.lab:desk"
`
