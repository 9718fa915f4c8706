// Package jsonstr appends JSON strings exactly as encoding/json writes
// them, without its reflection, for the few documents written on every
// token request (the answer, the audit line's replay documents).
package jsonstr

import (
	"encoding/json"
	"unicode/utf8"
)

// Append appends s as a JSON string. Plain ASCII, the common case, is
// copied; anything encoding/json would escape (control characters, quotes,
// backslashes, <, >, &, and all that is not ASCII) is left to it.
func Append(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendList appends ss as a JSON array of strings.
func AppendList(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = Append(b, s)
	}
	return append(b, ']')
}
