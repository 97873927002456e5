package service

import (
	"crypto/rand"
	"encoding/binary"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ID prefixes name the kind of object an id belongs to, so a cluster id
// pasted where a cloud id belongs fails validation instead of answering 404.
const (
	PrefixOrg           = "org"
	PrefixToken         = "tok"
	PrefixCloud         = "cld"
	PrefixComputeConfig = "cc"
	PrefixCluster       = "cls"
	PrefixNode          = "node"
	PrefixAuditEvent    = "evt"
	PrefixClusterEvent  = "cev"
)

const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz" // Crockford base32, lower case

// NewID returns prefix_ followed by 26 characters: 48 bits of milliseconds
// then 80 random bits, so ids sort by creation time and list pages can use
// the last id as their cursor. Within one millisecond of this process the
// random part counts up, so ids made one after another also sort in the
// order they were made (audit events and cluster events of one request or
// pass read in order).
func NewID(prefix string, now time.Time) string {
	ms := uint64(now.UnixMilli())
	idMu.Lock()
	if ms <= idLastMS {
		ms = idLastMS
		idRand.hi, idRand.lo = inc80(idRand.hi, idRand.lo)
	} else {
		var r [10]byte
		_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
		// Leave headroom so counting up within a millisecond never wraps.
		r[0] &= 0x7f
		idRand.hi, idRand.lo = uint64(binary.BigEndian.Uint16(r[:2])), binary.BigEndian.Uint64(r[2:])
		idLastMS = ms
	}
	hi, lo := idRand.hi, idRand.lo
	idMu.Unlock()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16|hi&0xffff)
	binary.BigEndian.PutUint64(b[8:], lo)
	return prefix + "_" + encode128(b)
}

var (
	idMu     sync.Mutex
	idLastMS uint64
	idRand   struct{ hi, lo uint64 } // 16 + 64 bits
)

func inc80(hi, lo uint64) (uint64, uint64) {
	lo++
	if lo == 0 {
		hi++
	}
	return hi, lo
}

func encode128(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	// 26 characters of 5 bits hold 130 bits; the first character carries
	// the top 3 bits only.
	for i := 25; i >= 0; i-- {
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

var idPattern = regexp.MustCompile(`^([a-z]+)_[0-9a-hjkmnp-tv-z]{26}$`)

// ValidID reports whether id is a well-formed id of the given kind.
func ValidID(prefix, id string) bool {
	m := idPattern.FindStringSubmatch(id)
	return m != nil && m[1] == prefix
}

// KindOf returns the prefix of a well-formed id, or "".
func KindOf(id string) string {
	if m := idPattern.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return ""
}

// randomString returns n characters of idAlphabet from crypto/rand.
func randomString(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	var sb strings.Builder
	for _, c := range buf {
		sb.WriteByte(idAlphabet[c&31])
	}
	return sb.String()
}

// NewExternalID returns the external id the control plane sends when it
// assumes a customer's AWS role: unique per cloud, 160 random bits, and
// never chosen by the customer (the confused-deputy defence).
func NewExternalID() string { return "rayplane-" + randomString(32) }
