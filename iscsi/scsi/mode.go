package scsi

// Mode pages (SPC-4 7.5, SBC-3 6.4): caching, control and informational
// exceptions. Parameters are shared by every nexus; none can be saved.

const (
	pageCaching = 0x08
	pageControl = 0x0a
	pageIE      = 0x1c
	pageAll     = 0x3f
)

// Page controls of MODE SENSE.
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

var modePageCodes = []byte{pageCaching, pageControl, pageIE}

// modePage returns page code in page control pc, or nil if there is none.
func (lu *LogicalUnit) modePage(code, pc byte) []byte {
	var p []byte
	switch code {
	case pageCaching:
		p = make([]byte, 0x14)
		switch pc {
		case pcChangeable:
			p[2] = 0x04
		case pcDefault:
			p[2] = 0x04
		default:
			if lu.wce.Load() {
				p[2] = 0x04 // WCE
			}
		}
	case pageControl:
		p = make([]byte, 0x0c)
		switch pc {
		case pcChangeable:
			p[2] = 0x04 // D_SENSE
			p[4] = 0x08 // SWP
		default:
			p[2] = 0x02             // GLTSD: no implicit log saving
			p[3] = 0x10             // queue algorithm modifier 1: unrestricted reordering
			p[8], p[9] = 0xff, 0xff // busy timeout period: unlimited
			if pc == pcCurrent {
				if lu.dsense.Load() {
					p[2] |= 0x04
				}
				if lu.swp.Load() {
					p[4] |= 0x08
				}
			}
		}
	case pageIE:
		p = make([]byte, 0x0c)
		if pc != pcChangeable {
			p[2] = 0x08 // DEXCPT: no informational exception reporting
		}
	default:
		return nil
	}
	p[0], p[1] = code, byte(len(p)-2)
	return p
}

// modeSense is MODE SENSE(6) and MODE SENSE(10) (SPC-4 6.11, 6.12).
func modeSense(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	ten := cdb[0] == 0x5a
	dbd := cdb[1]&0x08 != 0
	llbaa := ten && cdb[1]&0x10 != 0
	pc, code, subpage := cdb[2]>>6, cdb[2]&0x3f, cdb[3]
	alloc := uint32(cdb[4])
	if ten {
		alloc = uint32(be.Uint16(cdb[7:]))
	}
	if pc == pcSaved {
		return lu.fail(senseSavingNotSupported)
	}
	if subpage != 0 && !(code == pageAll && subpage == 0xff) {
		return lu.fail(badCDB(3, 7))
	}
	var pages []byte
	if code == pageAll {
		for _, c := range modePageCodes {
			pages = append(pages, lu.modePage(c, pc)...)
		}
	} else if pages = lu.modePage(code, pc); pages == nil {
		return lu.fail(badCDB(2, 5))
	}
	var bd []byte
	if !dbd {
		if llbaa {
			bd = make([]byte, 16)
			be.PutUint64(bd, lu.nblocks)
			be.PutUint32(bd[12:], blockSize)
		} else {
			bd = make([]byte, 8)
			be.PutUint32(bd, uint32(min(lu.nblocks, 0xffffffff)))
			be.PutUint32(bd[4:], blockSize) // byte 4 is reserved, 5..7 the length
		}
	}
	var devSpecific byte = 0x10 // DPOFUA
	if lu.cfg.ReadOnly || cmd.ReadOnly || lu.swp.Load() {
		devSpecific |= 0x80 // WP
	}
	var data []byte
	if ten {
		data = make([]byte, 8, 8+len(bd)+len(pages))
		data[3] = devSpecific
		if llbaa && !dbd {
			data[4] = 0x01 // LONGLBA
		}
		be.PutUint16(data[6:], uint16(len(bd)))
		data = append(append(data, bd...), pages...)
		be.PutUint16(data, uint16(len(data)-2))
	} else {
		data = make([]byte, 4, 4+len(bd)+len(pages))
		data[2] = devSpecific
		data[3] = byte(len(bd))
		data = append(append(data, bd...), pages...)
		data[0] = byte(len(data) - 1)
	}
	return good(data, alloc)
}

// modeSelect is MODE SELECT(6) and MODE SELECT(10) (SPC-4 6.9, 6.10).
func modeSelect(lu *LogicalUnit, cmd *Command) Response {
	cdb := cmd.CDB
	ten := cdb[0] == 0x55
	if cdb[1]&0x01 != 0 { // SP: nothing can be saved
		return lu.fail(badCDB(1, 0))
	}
	plen := int(cdb[4])
	hdr := 4
	if ten {
		plen, hdr = int(be.Uint16(cdb[7:])), 8
	}
	if plen == 0 {
		return Response{Status: StatusGood}
	}
	if len(cmd.DataOut) < plen || plen < hdr {
		return lu.fail(senseParamListLength)
	}
	p := cmd.DataOut[:plen]
	var bdlen int
	if ten {
		bdlen = int(be.Uint16(p[6:]))
	} else {
		bdlen = int(p[3])
	}
	if p[1] != 0 { // medium type
		return lu.fail(badParam(1, 7))
	}
	if hdr+bdlen > plen {
		return lu.fail(senseParamListLength)
	}
	switch bdlen {
	case 0:
	case 8, 16:
		bd := p[hdr : hdr+bdlen]
		if be.Uint32(bd[bdlen-4:])&0xffffff != blockSize {
			return lu.fail(badParam(hdr+bdlen-3, 7))
		}
	default:
		lenOff := 3
		if ten {
			lenOff = 6
		}
		return lu.fail(badParam(lenOff, 7))
	}
	type change struct{ code, b2, b4 byte }
	var changes []change
	for off := hdr + bdlen; off < plen; {
		if off+2 > plen {
			return lu.fail(senseParamListLength)
		}
		code := p[off] & 0x3f
		if p[off]&0x40 != 0 { // SPF: no subpages here
			return lu.fail(badParam(off, 6))
		}
		cur := lu.modePage(code, pcCurrent)
		if cur == nil {
			return lu.fail(badParam(off, 5))
		}
		if int(p[off+1]) != len(cur)-2 {
			return lu.fail(badParam(off+1, 7))
		}
		if off+len(cur) > plen {
			return lu.fail(senseParamListLength)
		}
		mask := lu.modePage(code, pcChangeable)
		page := p[off : off+len(cur)]
		for i := 2; i < len(cur); i++ {
			if (page[i]^cur[i])&^mask[i] != 0 {
				return lu.fail(badParam(off+i, 7))
			}
		}
		changes = append(changes, change{code, page[2], page[4]})
		off += len(cur)
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	changed := false
	set := func(v interface{ Swap(bool) bool }, b bool) {
		if v.Swap(b) != b {
			changed = true
		}
	}
	for _, c := range changes {
		switch c.code {
		case pageCaching:
			set(&lu.wce, c.b2&0x04 != 0)
		case pageControl:
			set(&lu.dsense, c.b2&0x04 != 0)
			set(&lu.swp, c.b4&0x08 != 0)
		}
	}
	if changed {
		for n := range lu.nexuses {
			if n != cmd.Nexus {
				lu.unitAttentionLocked(n, senseModeChanged)
			}
		}
	}
	return Response{Status: StatusGood}
}
