// Package ulid makes ULIDs: 26 characters of Crockford base32 holding a
// 48-bit millisecond timestamp and 80 random bits. Within one generator the
// ids are strictly increasing, even within one millisecond, so that sorting
// by id is sorting by creation (docs/contract.md, conventions).
package ulid

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Generator makes monotonic ULIDs. The zero value is ready to use.
type Generator struct {
	mu      sync.Mutex
	lastMs  uint64
	hi      uint16 // top 16 random bits
	lo      uint64 // low 64 random bits
	entropy [10]byte
}

// New returns a ULID for time t.
func (g *Generator) New(t time.Time) string {
	ms := uint64(t.UnixMilli())
	g.mu.Lock()
	if ms <= g.lastMs {
		// Same (or an earlier) millisecond: keep the previous timestamp and
		// increment the random part, so ids never go backwards.
		ms = g.lastMs
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		g.lastMs = ms
		_, _ = rand.Read(g.entropy[:])
		g.hi = binary.BigEndian.Uint16(g.entropy[:2])
		g.lo = binary.BigEndian.Uint64(g.entropy[2:])
		// Leave room to increment within the millisecond.
		g.lo &^= 1 << 63
	}
	hi, lo := g.hi, g.lo
	g.mu.Unlock()
	return encode(ms, hi, lo)
}

// encode writes the 128-bit value (48-bit time, 80-bit random) as 26
// base32 characters, 5 bits each, most significant first (2 pad bits).
func encode(ms uint64, hi uint16, lo uint64) string {
	var b [26]byte
	// The 128-bit number as two 64-bit halves.
	top := ms<<16 | uint64(hi) // 48 + 16 bits
	bottom := lo
	for i := 25; i >= 0; i-- {
		b[i] = alphabet[bottom&31]
		bottom = bottom>>5 | top<<59
		top >>= 5
	}
	return string(b[:])
}
