// Package auditvalue bounds the values that requests put in audit records
// and spans: a request must not grow the audit log by more than a few
// hundred bytes a value, nor put invalid UTF-8 in it.
package auditvalue

import (
	"strings"
	"unicode/utf8"
)

// Max bounds a string value from a request.
const Max = 256

// truncatedMark ends a value that was cut.
const truncatedMark = "…(truncated)"

// Bound returns s as valid UTF-8 of at most n bytes, cut at a character
// and marked when it was longer.
func Bound(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}
