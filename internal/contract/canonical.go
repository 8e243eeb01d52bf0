package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/confiture-io/confiture-worker/internal/clip"
)

// MaxJSONDepth bounds the nesting of objects and arrays in a request message. A valid request
// nests 5 levels down to a hook's params, which may nest MaxParamsDepth more, so no valid
// request comes near it; deeper input is refused before it is parsed.
const MaxJSONDepth = 64

// CanonicalJSON returns the canonical form of the JSON text data, as defined by RFC 8785 (JSON
// Canonicalization Scheme, JCS): no insignificant whitespace; object members sorted by their
// names compared as UTF-16 code units; strings with only '"', '\\' and the control characters
// escaped (\b \t \n \f \r, the others as \u00xx with lower-case hex), everything else written
// as UTF-8; numbers as ECMAScript writes the IEEE 754 double they denote (1.0 is 1, 1e3 is 1000,
// 1e21 is 1e+21); true, false and null as such.
//
// Input that has no canonical form is an error: invalid UTF-8, an object with a duplicate
// member name, a number out of the double range, nesting deeper than MaxJSONDepth, or more
// than one JSON value.
func CanonicalJSON(data []byte) ([]byte, error) {
	return canonical(data, nil)
}

// SigningInput returns the bytes the signature of a request covers: the canonical form
// (CanonicalJSON) of the request message data with the "sig" member of its top-level
// "signature" object removed. Everything else, the rest of the signature object included
// (key_id, alg, signed_at, expires_at), is covered.
func SigningInput(data []byte) ([]byte, error) {
	return canonical(data, func(obj *jsonObject) {
		if sig, ok := obj.get("signature").(*jsonObject); ok {
			sig.remove("sig")
		}
	})
}

// RequestBody returns the canonical form (CanonicalJSON) of the request message data without
// its "signature" member: what the request asks for, whoever signed it and however it was
// encoded. Two messages with the same body are the same request.
func RequestBody(data []byte) ([]byte, error) {
	return canonical(data, func(obj *jsonObject) { obj.remove("signature") })
}

// canonical parses data, lets edit change the request object (data must then be an object),
// and writes the canonical form.
func canonical(data []byte, edit func(*jsonObject)) ([]byte, error) {
	v, err := parseCanonical(data)
	if err != nil {
		return nil, err
	}
	if edit != nil {
		obj, ok := v.(*jsonObject)
		if !ok {
			return nil, errors.New("a request must be a JSON object")
		}
		edit(obj)
	}
	var b bytes.Buffer
	b.Grow(len(data))
	writeCanonical(&b, v)
	return b.Bytes(), nil
}

// jsonObject keeps an object's members in input order; they are sorted when written.
type jsonObject struct {
	names  []string
	values []any
}

func (o *jsonObject) get(name string) any {
	if i := slices.Index(o.names, name); i >= 0 {
		return o.values[i]
	}
	return nil
}

func (o *jsonObject) remove(name string) {
	if i := slices.Index(o.names, name); i >= 0 {
		o.names = slices.Delete(o.names, i, i+1)
		o.values = slices.Delete(o.values, i, i+1)
	}
}

// canonicalNumber is a number already in its canonical form.
type canonicalNumber string

// parseCanonical parses data into strings, canonicalNumbers, bools, nil, []any and
// *jsonObjects, checking what CanonicalJSON requires.
func parseCanonical(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	if d := jsonDepth(data); d > MaxJSONDepth {
		return nil, fmt.Errorf("JSON nests more than %d levels deep", MaxJSONDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	switch _, err := dec.Token(); {
	case err == nil:
		return nil, errors.New("more than one JSON value")
	case err != io.EOF:
		return nil, fmt.Errorf("malformed JSON after the value: %s", clip.String(err.Error(), 200, "..."))
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("unexpected end of JSON input")
		}
		return nil, fmt.Errorf("malformed JSON: %s", clip.String(err.Error(), 200, "..."))
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxJSONDepth {
			return nil, fmt.Errorf("JSON nests more than %d levels deep", MaxJSONDepth)
		}
		switch t {
		case '{':
			obj := &jsonObject{}
			seen := map[string]bool{}
			for dec.More() {
				ktok, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("malformed JSON: %s", clip.String(err.Error(), 200, "..."))
				}
				name, _ := ktok.(string)
				if seen[name] {
					return nil, fmt.Errorf("duplicate member %s in an object", quote(name, 64))
				}
				seen[name] = true
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj.names = append(obj.names, name)
				obj.values = append(obj.values, v)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, fmt.Errorf("malformed JSON: %s", clip.String(err.Error(), 200, "..."))
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("malformed JSON: %s", clip.String(err.Error(), 200, "..."))
			}
			return arr, nil
		}
		return nil, fmt.Errorf("malformed JSON: unexpected %q", rune(t))
	case json.Number:
		n, err := FormatJSONNumber(string(t))
		if err != nil {
			return nil, err
		}
		return canonicalNumber(n), nil
	default: // string, bool, nil
		return t, nil
	}
}

// FormatJSONNumber returns the canonical form of a JSON number: the IEEE 754 double it denotes,
// written as ECMAScript's Number.prototype.toString writes it (RFC 8785, section 3.2.2.3).
func FormatJSONNumber(literal string) (string, error) {
	f, err := strconv.ParseFloat(literal, 64)
	if err != nil {
		return "", fmt.Errorf("number %s is not a finite double", clip.String(literal, 40, "..."))
	}
	if f == 0 {
		return "0", nil // -0 too
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// The shortest digits that read back as f, and the exponent of the first one.
	mantissa, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	digits := strings.Replace(mantissa, ".", "", 1)
	e, _ := strconv.Atoi(exp)
	k, n := len(digits), e+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k), nil
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:], nil
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits, nil
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	x := strconv.Itoa(abs(n - 1))
	if k == 1 {
		return sign + digits + "e" + es + x, nil
	}
	return sign + digits[:1] + "." + digits[1:] + "e" + es + x, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func writeCanonical(b *bytes.Buffer, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case canonicalNumber:
		b.WriteString(string(t))
	case string:
		writeCanonicalString(b, t)
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case *jsonObject:
		order := make([]int, len(t.names))
		keys := make([][]uint16, len(t.names))
		for i, name := range t.names {
			order[i] = i
			keys[i] = utf16.Encode([]rune(name))
		}
		slices.SortFunc(order, func(x, y int) int { return slices.Compare(keys[x], keys[y]) })
		b.WriteByte('{')
		for i, j := range order {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonicalString(b, t.names[j])
			b.WriteByte(':')
			writeCanonical(b, t.values[j])
		}
		b.WriteByte('}')
	}
}

func writeCanonicalString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// jsonDepth returns the deepest nesting of objects and arrays in JSON text, without parsing
// it (brackets inside strings do not count). It reads malformed text too.
func jsonDepth(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
