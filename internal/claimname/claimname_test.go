package claimname

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCheckExtra(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"team", true},
		{"mcp.tenant", true},
		{"x-env:prod_1", true},
		{"aud", false},
		{"Aud", false},
		{"SCOPE", false},
		{"EXP", false},
		{"Client_ID", false},
		{"\u017fcope", false}, // long s folds to s: "scope"
		{"ro\u212aes", false}, // not a registered fold, but not the pattern either
		{"team\u212a", false}, // Kelvin sign
		{"Team", false},       // upper case
		{"", false},           // empty
		{"1team", false},      // starts with a digit
		{"team/a", false},     // slash
		{"team a", false},     // space
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 64), true},
	} {
		err := CheckExtra(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckExtra(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	for _, r := range Registered() {
		for _, v := range []string{r, strings.ToUpper(r), strings.ToUpper(r[:1]) + r[1:]} {
			if CheckExtra(v) == nil || !IsRegistered(v) {
				t.Errorf("%q accepted as an extra claim", v)
			}
		}
	}
}

func TestCheckPayload(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		ok            bool
	}{
		{"plain", `{"iss":"a","aud":"b","scope":"x y","act":{"sub":"s","act":{"sub":"t"}},"cnf":{"x5t#S256":"z"},"team":{"Name":1}}`, true},
		{"arrays and scalars", `{"aud":["a"],"n":[1,{"a":1},[true,null]],"x":-1.5e3}`, true},
		{"Aud beside aud", `{"aud":"https://payments.example.com/mcp","Aud":"https://i/admin"}`, false},
		{"Scope alone", `{"Scope":"mcpsts:admin"}`, false},
		{"EXP", `{"exp":1,"EXP":4102444800}`, false},
		{"long s", `{"scope":"a","\u017fcope":"b"}`, false},
		{"escaped upper", `{"\u0041ud":"x"}`, false},
		{"exact repeat", `{"sub":"a","sub":"b"}`, false},
		{"fold repeat of an extra claim", `{"team":"a","TEAM":"b"}`, false},
		{"kelvin fold repeat", `{"kid":"a","\u212aid":"b"}`, false},
		{"nested in act", `{"act":{"sub":"a","Sub":"b"}}`, false},
		{"nested registered variant", `{"act":{"Client_Id":"a"}}`, false},
		{"deep in an array", `{"x":[{"a":1,"A":2}]}`, false},
		{"too deep", `{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, false},
		{"not JSON", `{"a":`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPayload([]byte(tc.payload))
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrAmbiguous) {
				t.Fatalf("CheckPayload = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzCheckPayload: whatever CheckPayload accepts, encoding/json reads
// each registered claim from exactly the member spelled that way: decoding
// into a struct (case-insensitive, last wins) and into a map (exact) agree.
func FuzzCheckPayload(f *testing.F) {
	for _, s := range []string{`{"aud":"a","Aud":"b"}`, `{"scope":"x","act":{"sub":"y"}}`, `{"\u017fcope":"b"}`, `{"a":[{"b":1}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckPayload(b) != nil {
			return
		}
		var folded struct {
			Aud   any `json:"aud"`
			Scope any `json:"scope"`
			Exp   any `json:"exp"`
			Sub   any `json:"sub"`
			Cnf   any `json:"cnf"`
			Act   any `json:"act"`
		}
		var exact map[string]any
		if json.Unmarshal(b, &folded) != nil || json.Unmarshal(b, &exact) != nil {
			return
		}
		for name, got := range map[string]any{"aud": folded.Aud, "scope": folded.Scope, "exp": folded.Exp, "sub": folded.Sub, "cnf": folded.Cnf, "act": folded.Act} {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(exact[name])
			if string(g) != string(w) {
				t.Fatalf("%s: read case-insensitively %s, exactly %s, from %q", name, g, w, b)
			}
		}
	})
}

// reference is CheckPayload written over encoding/json's tokens: slower,
// and the yardstick FuzzAgainstReference holds the scanner to.
func reference(payload []byte) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if err := refValue(dec, tok, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

func refValue(dec *json.Decoder, tok json.Token, depth int) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxDepth {
		return errors.New("too deep")
	}
	var names []string
	for dec.More() {
		if d == '{' {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name := tok.(string)
			if r := registeredFold(name); r != "" && r != name {
				return errors.New("registered variant")
			}
			for _, n := range names {
				if strings.EqualFold(n, name) {
					return errors.New("fold duplicate")
				}
			}
			names = append(names, name)
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if err := refValue(dec, tok, depth+1); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// FuzzAgainstReference: on every input encoding/json accepts, the byte
// scanner and the token-based reference agree.
func FuzzAgainstReference(f *testing.F) {
	for _, s := range []string{`{"aud":"a","Aud":"b"}`, `{"a\u0041":1,"aa":2}`, `{"x":[1,{"k":"\"}"}],"\u212aid":1,"kid":2}`, "{\"a\xff\":1,\"a\xfe\":2}", `{"s":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			CheckPayload(b) // must not panic or hang
			return
		}
		got, want := CheckPayload(b), reference(b)
		if (got == nil) != (want == nil) {
			t.Fatalf("scanner %v, reference %v, on %q", got, want, b)
		}
	})
}

func BenchmarkCheckPayload(b *testing.B) {
	p := []byte(`{"iss":"https://127.0.0.1:8443","sub":"workload:ci/system:serviceaccount:apps:agent","aud":"https://mcp.example.com/mcp","client_id":"agent","scope":"files:read files:write","iat":1764470000,"nbf":1764470000,"exp":1764470900,"jti":"3q2-7u6D9fQwVx1bH0aJ8A","act":{"sub":"workload:ci/x","client_id":"files"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckPayload(p); err != nil {
			b.Fatal(err)
		}
	}
}
