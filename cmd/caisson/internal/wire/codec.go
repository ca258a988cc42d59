package wire

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// The codec turns a Go value into bytes and back by walking it with reflection: no type descriptions travel (both
// ends know the types), nothing is registered, and nothing runs at program start. It replaced encoding/gob, whose
// package initialisation and per-message type descriptions were a large share of the CPU of every sandbox's start
// (issue 14): both the parent and init paid gob's start-up on every run.
//
// Encoding, by kind:
//   - bool: one byte; signed integers: zig-zag varint; unsigned integers: uvarint; floats: uvarint of the IEEE bits;
//   - string and []byte: uvarint length, then the bytes as they are (not necessarily UTF-8);
//   - slice, array: uvarint count, then the elements; map: uvarint count, then key and value of each entry;
//   - pointer: 0 for nil, else 1 and the value pointed to;
//   - a type that implements encoding.BinaryMarshaler (netip.Prefix, time.Time): its bytes, as a string;
//   - struct: uvarint count of the fields that are not zero, then each as its name (a string), the length of its
//     value (4 bytes, little-endian) and the value. The decoder matches fields by name and skips names it does not
//     know, so that a client and a supervisor of different versions still understand each other, as with gob.
//
// Decoding is bounded by the message: every length and count is checked against the bytes left before anything is
// allocated, and nesting is limited, so that a hostile peer (a compromised sandbox's init) can make the reader fail
// but not allocate without bound or recurse for ever.

// maxDepth bounds the nesting of values (the messages' types nest a few levels).
const maxDepth = 32

var (
	marshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	unmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// binaryCoded reports whether values of type t travel as their MarshalBinary bytes: t (or its pointer) has both
// MarshalBinary and UnmarshalBinary.
func binaryCoded(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface {
		return false
	}
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerType) && (t.Implements(marshalerType) || pt.Implements(marshalerType))
}

// appendValue appends v's encoding to b.
func appendValue(b []byte, v reflect.Value, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("value nested too deeply")
	}
	t := v.Type()
	if binaryCoded(t) {
		if !t.Implements(marshalerType) { // MarshalBinary on the pointer: marshal a copy
			p := reflect.New(t)
			p.Elem().Set(v)
			v = p
		}
		m, err := v.Interface().(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		return appendBytes(b, m), nil
	}
	switch t.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(b, v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return binary.AppendUvarint(b, v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return binary.AppendUvarint(b, math.Float64bits(v.Float())), nil
	case reflect.String:
		b = binary.AppendUvarint(b, uint64(v.Len()))
		return append(b, v.String()...), nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return appendBytes(b, v.Bytes()), nil
		}
		b = binary.AppendUvarint(b, uint64(v.Len()))
		var err error
		for i := 0; i < v.Len() && err == nil; i++ {
			b, err = appendValue(b, v.Index(i), depth+1)
		}
		return b, err
	case reflect.Map:
		b = binary.AppendUvarint(b, uint64(v.Len()))
		var err error
		for it := v.MapRange(); it.Next() && err == nil; {
			if b, err = appendValue(b, it.Key(), depth+1); err == nil {
				b, err = appendValue(b, it.Value(), depth+1)
			}
		}
		return b, err
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 0), nil
		}
		return appendValue(append(b, 1), v.Elem(), depth+1)
	case reflect.Struct:
		return appendStruct(b, v, depth)
	}
	return nil, fmt.Errorf("cannot encode a value of type %s", t)
}

func appendBytes(b, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// appendStruct appends the exported fields of v that are not zero, each with its name and length.
func appendStruct(b []byte, v reflect.Value, depth int) ([]byte, error) {
	t := v.Type()
	n := 0
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() && !v.Field(i).IsZero() {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || v.Field(i).IsZero() {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(f.Name)))
		b = append(b, f.Name...)
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		if b, err = appendValue(b, v.Field(i), depth+1); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		size := len(b) - at - 4
		if size > math.MaxUint32 {
			return nil, fmt.Errorf("%s.%s: value too large", t, f.Name)
		}
		binary.LittleEndian.PutUint32(b[at:], uint32(size))
	}
	return b, nil
}

// decoder reads values from a message.
type decoder struct {
	b []byte
}

var errShort = errors.New("message ends early")

func (d *decoder) uvarint() (uint64, error) {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, errShort
	}
	d.b = d.b[n:]
	return x, nil
}

func (d *decoder) varint() (int64, error) {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		return 0, errShort
	}
	d.b = d.b[n:]
	return x, nil
}

// bytes returns the next length-prefixed bytes (aliasing the message).
func (d *decoder) bytes() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)) {
		return nil, errShort
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out, nil
}

// count reads an element count; each element takes at least one byte, so a count above the bytes left is a lie.
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)) {
		return 0, errShort
	}
	return int(n), nil
}

// value decodes into v, which must be settable.
func (d *decoder) value(v reflect.Value, depth int) error {
	if depth > maxDepth {
		return errors.New("value nested too deeply")
	}
	t := v.Type()
	if binaryCoded(t) {
		data, err := d.bytes()
		if err != nil {
			return err
		}
		if err := v.Addr().Interface().(encoding.BinaryUnmarshaler).UnmarshalBinary(data); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		if len(d.b) == 0 {
			return errShort
		}
		v.SetBool(d.b[0] != 0)
		d.b = d.b[1:]
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x, err := d.varint()
		if err != nil {
			return err
		}
		if v.OverflowInt(x) {
			return fmt.Errorf("%d overflows %s", x, t)
		}
		v.SetInt(x)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		x, err := d.uvarint()
		if err != nil {
			return err
		}
		if v.OverflowUint(x) {
			return fmt.Errorf("%d overflows %s", x, t)
		}
		v.SetUint(x)
		return nil
	case reflect.Float32, reflect.Float64:
		x, err := d.uvarint()
		if err != nil {
			return err
		}
		v.SetFloat(math.Float64frombits(x))
		return nil
	case reflect.String:
		s, err := d.bytes()
		if err != nil {
			return err
		}
		v.SetString(string(s))
		return nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s, err := d.bytes()
			if err != nil {
				return err
			}
			v.SetBytes(append([]byte(nil), s...))
			return nil
		}
		n, err := d.count()
		if err != nil {
			return err
		}
		s := reflect.MakeSlice(t, n, n)
		for i := 0; i < n; i++ {
			if err := d.value(s.Index(i), depth+1); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Array:
		n, err := d.count()
		if err != nil {
			return err
		}
		if n != v.Len() {
			return fmt.Errorf("%d elements for %s", n, t)
		}
		for i := 0; i < n; i++ {
			if err := d.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		n, err := d.count()
		if err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(t, n)
		for i := 0; i < n; i++ {
			k, e := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
			if err := d.value(k, depth+1); err != nil {
				return err
			}
			if err := d.value(e, depth+1); err != nil {
				return err
			}
			m.SetMapIndex(k, e)
		}
		v.Set(m)
		return nil
	case reflect.Pointer:
		if len(d.b) == 0 {
			return errShort
		}
		present := d.b[0]
		d.b = d.b[1:]
		if present == 0 {
			v.SetZero()
			return nil
		}
		p := reflect.New(t.Elem())
		if err := d.value(p.Elem(), depth+1); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return d.structValue(v, depth)
	}
	return fmt.Errorf("cannot decode into a value of type %s", t)
}

// structValue decodes the fields sent into v's fields of the same names; unknown names are skipped.
func (d *decoder) structValue(v reflect.Value, depth int) error {
	t := v.Type()
	n, err := d.count()
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		name, err := d.bytes()
		if err != nil {
			return err
		}
		if len(d.b) < 4 {
			return errShort
		}
		size := binary.LittleEndian.Uint32(d.b)
		d.b = d.b[4:]
		if uint64(size) > uint64(len(d.b)) {
			return errShort
		}
		body := d.b[:size]
		d.b = d.b[size:]
		i := fieldIndex(t, string(name))
		if i < 0 {
			continue // a field of another version
		}
		sub := decoder{b: body}
		if err := sub.value(v.Field(i), depth+1); err != nil {
			return fmt.Errorf("%s.%s: %w", t, name, err)
		}
		if len(sub.b) != 0 {
			return fmt.Errorf("%s.%s: %d bytes left over", t, name, len(sub.b))
		}
	}
	return nil
}

// fieldIndex returns the index of t's exported field called name, or -1.
func fieldIndex(t reflect.Type, name string) int {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.Name == name && f.IsExported() {
			return i
		}
	}
	return -1
}

// encode returns the encoding of v.
func encode(prefix []byte, v any) ([]byte, error) {
	if v == nil {
		return nil, errors.New("cannot encode nil")
	}
	return appendValue(prefix, reflect.ValueOf(v), 0)
}

// decode decodes b into the value v points to; all of b must be used.
func decode(b []byte, v any) error {
	p := reflect.ValueOf(v)
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return errors.New("decode needs a non-nil pointer")
	}
	d := decoder{b: b}
	if err := d.value(p.Elem(), 0); err != nil {
		return err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d bytes left over", len(d.b))
	}
	return nil
}
