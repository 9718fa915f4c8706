// Package claimname holds the rules for the member names of the access
// tokens mcpsts issues, shared by what writes them (trust maps, the
// issuer) and what reads them (the admin API, resource servers).
//
// encoding/json, which every Go verifier of ours decodes with, matches
// member names without regard to case (Unicode simple folding: the Kelvin
// sign is k, the long s is s) and keeps the last: a token holding both
// "aud" and "Aud" would be read with the second. So an extra claim may
// never fold to a registered claim, and a verifier refuses a payload with
// two names that fold together or a registered name spelled otherwise.
package claimname

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// registered are the claims the broker sets and those that RFC 7519,
// RFC 9068, RFC 8693 and RFC 7800 (and OpenID Connect, whose names
// verifiers know) define: none of them may be set as an extra claim.
var registered = []string{
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", // RFC 7519 §4.1
	"client_id", "scope", "auth_time", "acr", "amr", "groups", "roles", "entitlements", // RFC 9068 §2.2
	"act", "may_act", // RFC 8693 §4
	"cnf",                                   // RFC 7800 §3.1
	"azp", "typ", "nonce", "sid", "at_hash", // OpenID Connect Core §2
	"single_use", // the broker's: a token valid for one use
}

// Registered lists the claims that cannot be set as extra claims.
func Registered() []string { return slices.Clone(registered) }

// IsRegistered reports whether name is a registered claim in any letter
// case.
func IsRegistered(name string) bool { return registeredFold(name) != "" }

// registeredFold returns the registered claim name folds to, or "".
func registeredFold(name string) string {
	for _, r := range registered {
		if strings.EqualFold(name, r) {
			return r
		}
	}
	return ""
}

// extraPattern is the form of an extra claim's name: lower-case ASCII
// letters and digits with _ - . : between them, starting with a letter.
var extraPattern = regexp.MustCompile(`^[a-z][a-z0-9_.:-]*$`)

// MaxExtraLen bounds an extra claim's name.
const MaxExtraLen = 64

// CheckExtra says why name cannot be an extra claim of a token, or
// returns nil.
func CheckExtra(name string) error {
	switch {
	case IsRegistered(name):
		return errors.New("reserved: the issuer sets it, or a standard gives it a meaning (names are compared in every letter case)")
	case len(name) > MaxExtraLen || !extraPattern.MatchString(name):
		return fmt.Errorf("an extra claim's name is lower-case letters, digits, _ - . : starting with a letter, at most %d bytes", MaxExtraLen)
	}
	return nil
}

// ErrAmbiguous is why CheckPayload refuses a payload.
var ErrAmbiguous = errors.New("claimname: ambiguous member names")

// maxDepth bounds the nesting CheckPayload follows (encoding/json allows
// 10000; our tokens nest act a few levels at most).
const maxDepth = 32

// CheckPayload refuses (with ErrAmbiguous) a JSON object, at any depth,
// holding two member names that fold to the same name, or a member whose
// name folds to a registered claim but is spelled otherwise. It reads
// member names as encoding/json does (escapes decoded) and skips values;
// it does not otherwise validate the JSON, which the caller decodes too.
// It runs on every token a verifier of ours checks, so it scans bytes
// rather than tokens.
func CheckPayload(payload []byte) error {
	s := scanner{b: payload}
	s.space()
	if err := s.value(0); err != nil {
		return fmt.Errorf("%w: %s", ErrAmbiguous, err)
	}
	return nil
}

type scanner struct {
	b []byte
	i int
}

var errSyntax = errors.New("not a JSON value")

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value reads the value at s.i.
func (s *scanner) value(depth int) error {
	if s.i >= len(s.b) {
		return errSyntax
	}
	switch s.b[s.i] {
	case '{', '[':
		if depth >= maxDepth {
			return fmt.Errorf("nested deeper than %d", maxDepth)
		}
		if s.b[s.i] == '{' {
			return s.object(depth)
		}
		return s.array(depth)
	case '"':
		_, _, err := s.str()
		return err
	}
	// A number, true, false or null: up to the next delimiter.
	start := s.i
scalar:
	for ; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			break scalar
		}
	}
	if s.i == start {
		return errSyntax
	}
	return nil
}

// str reads the string at s.i and returns its raw content, and whether it
// holds escapes.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	s.i++ // the opening quote
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		}
		s.i++
	}
	return nil, false, errSyntax
}

// plain reports whether a name can only fold to itself among names
// that are plain too: lower-case ASCII letters, digits and punctuation.
func plain(name []byte) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

func (s *scanner) object(depth int) error {
	s.i++ // {
	var buf [16][]byte
	names := buf[:0]
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errSyntax
		}
		start := s.i
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		name := raw
		if escaped || !utf8.Valid(raw) { // as encoding/json reads it
			var decoded string
			if json.Unmarshal(s.b[start:s.i], &decoded) != nil {
				return errSyntax
			}
			name = []byte(decoded)
		}
		isPlain := plain(name)
		if !isPlain {
			if r := registeredFold(string(name)); r != "" {
				return fmt.Errorf("%q is a registered claim (%s) in another letter case", name, r)
			}
		}
		for _, n := range names {
			if bytes.Equal(n, name) || (!isPlain || !plain(n)) && bytes.EqualFold(n, name) {
				return fmt.Errorf("%q and %q", n, name)
			}
		}
		names = append(names, name)
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errSyntax
		}
		s.i++
		s.space()
		if done, err := s.element(depth, '}'); done || err != nil {
			return err
		}
	}
}

func (s *scanner) array(depth int) error {
	s.i++ // [
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.space()
		if done, err := s.element(depth, ']'); done || err != nil {
			return err
		}
	}
}

// element reads a member's or an item's value and what follows it: a comma
// (more to come) or the container's closing delimiter (done).
func (s *scanner) element(depth int, closing byte) (done bool, err error) {
	if err := s.value(depth + 1); err != nil {
		return false, err
	}
	s.space()
	if s.i >= len(s.b) {
		return false, errSyntax
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, nil
	case closing:
		s.i++
		return true, nil
	}
	return false, errSyntax
}
