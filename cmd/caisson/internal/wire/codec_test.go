package wire

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	N    int
	Tags []string
}

type kinds struct {
	B     bool
	I     int
	I8    int8
	I16   int16
	I32   int32
	I64   int64
	U     uint
	U8    uint8
	U16   uint16
	U32   uint32
	U64   uint64
	UP    uintptr
	F     float64
	S     string
	Named named
	Raw   []byte
	List  []string
	Empty []string // non-nil, empty: stays non-nil
	Arr   [3]uint16
	Map   map[string]inner
	Ints  map[int]bool
	Ptr   *inner
	PtrZ  *inner // non-nil pointer to a zero value
	Nil   *inner
	Sub   inner
	Subs  []inner
	Pfx   netip.Prefix
	When  time.Time
	priv  int //nolint:unused // unexported: not sent
}

type named string

func TestCodecRoundTrip(t *testing.T) {
	odd := "a\xff\xfeb" // not UTF-8: arrives byte for byte
	in := kinds{
		B: true, I: -1 << 40, I8: -128, I16: -300, I32: 1 << 30, I64: -1 << 62,
		U: 1 << 50, U8: 255, U16: 65535, U32: 1<<32 - 1, U64: 1<<64 - 1, UP: 0xdeadbeef,
		F: -3.25, S: odd, Named: "x", Raw: []byte{0, 1, 0xff}, List: []string{odd, "", "z"}, Empty: []string{},
		Arr: [3]uint16{1, 0, 3}, Map: map[string]inner{"k": {N: 1, Tags: []string{odd}}, "": {}},
		Ints: map[int]bool{-1: true, 2: false}, Ptr: &inner{N: 7}, PtrZ: &inner{}, Sub: inner{N: 2},
		Subs: []inner{{N: 1}, {}, {Tags: []string{"t"}}}, Pfx: netip.MustParsePrefix("10.0.2.0/24"),
		When: time.Date(2026, 12, 3, 10, 0, 0, 5, time.UTC),
	}
	b, err := encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	var out kinds
	if err := decode(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the value:\n in  %+v\n out %+v", in, out)
	}
	var zero kinds
	if b, err = encode(nil, zero); err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 { // no field is sent
		t.Errorf("a zero struct encodes to %d bytes, want 1", len(b))
	}
}

// Fields are matched by name: a field the receiver does not know is skipped, one the sender did not send stays
// zero, so that a client and a supervisor of different versions understand each other.
func TestCodecFieldsByName(t *testing.T) {
	type v1 struct {
		A     string
		Added []int
		C     int
	}
	type v2 struct {
		C   int
		A   string
		New bool
	}
	b, err := encode(nil, v1{A: "a", Added: []int{1, 2}, C: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got v2
	if err := decode(b, &got); err != nil {
		t.Fatal(err)
	}
	if got != (v2{C: 3, A: "a"}) {
		t.Errorf("got %+v", got)
	}
	// A field whose type changed is an error, not a silent misreading.
	type v3 struct{ A int }
	if err := decode(b, &v3{}); err == nil {
		t.Error("a string decoded into an int field")
	}
}

// Hostile input fails cleanly: truncated messages, counts and lengths larger than the message (which must not be
// allocated), trailing bytes, overflowing integers, values nested too deeply.
func TestCodecRejectsBadInput(t *testing.T) {
	good, err := encode(nil, kinds{S: "hello", List: []string{"a", "b"}, Sub: inner{N: 5}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(good); i++ {
		if err := decode(good[:i], &kinds{}); err == nil {
			t.Errorf("a message cut at %d of %d bytes decoded", i, len(good))
		}
	}
	if err := decode(append(append([]byte(nil), good...), 0), &kinds{}); err == nil {
		t.Error("trailing bytes accepted")
	}
	// A slice claiming 2^40 elements in a few bytes.
	huge := binary.AppendUvarint(nil, 1<<40)
	var list []string
	if err := decode(huge, &list); err == nil {
		t.Error("a count larger than the message was accepted")
	}
	if err := decode(binary.AppendUvarint(nil, 1<<40), new(string)); err == nil {
		t.Error("a length larger than the message was accepted")
	}
	var small int8
	if err := decode(binary.AppendVarint(nil, 1000), &small); err == nil {
		t.Error("1000 decoded into an int8")
	}
	type deep struct{ P *deep }
	var d *deep
	for i := 0; i < 100; i++ {
		d = &deep{P: d}
	}
	if _, err := encode(nil, d); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Errorf("encoding 100 levels: %v", err)
	}
	// 100 levels of "present" pointers, hand-made: the decoder stops at its bound.
	var msg []byte
	for i := 0; i < 100; i++ {
		msg = append(msg, 1, 1) // pointer present, struct with one field...
		msg = binary.AppendUvarint(msg, 1)
		msg = append(msg, 'P')
		msg = append(msg, 0xff, 0xff, 0, 0)
	}
	if err := decode(msg, new(*deep)); err == nil {
		t.Error("a message nested 100 levels deep decoded")
	}
	if _, err := encode(nil, struct{ C chan int }{make(chan int)}); err == nil {
		t.Error("a channel encoded")
	}
	if err := decode(good, kinds{}); err == nil {
		t.Error("decoded into a non-pointer")
	}
}

// The messages of the protocol survive the codec whole, the sandbox's configuration included.
func TestCodecMessage(t *testing.T) {
	m := Message{Type: "exec", ID: "3", PID: 9, Exec: &ExecRequest{Args: []string{"sh", "-c", "x"}, TTY: true},
		Join: []string{"net"}, Signal: 15, Status: 0, Code: 126, Error: "e", Grace: 1500}
	b, err := encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if err := decode(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, got) {
		t.Errorf("got %+v", got)
	}
	if !bytes.Contains(b, []byte("Grace")) {
		t.Error("fields do not travel by name")
	}
}
