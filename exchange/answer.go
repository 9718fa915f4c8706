package exchange

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/mcpsts/mcpsts/internal/jsonstr"
)

// Header values shared by every answer: net/http only reads them.
var (
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
	headerJSON    = []string{"application/json"}
)

// noStore marks an answer that holds a token or an error about one as not
// to be cached (RFC 6749 §5.1).
func noStore(w http.ResponseWriter) {
	h := w.Header()
	h["Cache-Control"], h["Pragma"] = headerNoStore, headerNoCache
}

// answerBufs hold success answers while they are written.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeToken writes the success answer in one write, with its length: the
// JSON of resp, members in a fixed order, as encoding/json would write it.
func writeToken(w http.ResponseWriter, resp *tokenResponse) {
	bp := answerBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"access_token":`...)
	b = jsonstr.Append(b, resp.AccessToken)
	if resp.IssuedTokenType != "" {
		b = jsonstr.Append(append(b, `,"issued_token_type":`...), resp.IssuedTokenType)
	}
	b = jsonstr.Append(append(b, `,"token_type":`...), resp.TokenType)
	b = strconv.AppendInt(append(b, `,"expires_in":`...), resp.ExpiresIn, 10)
	if resp.Scope != "" {
		b = jsonstr.Append(append(b, `,"scope":`...), resp.Scope)
	}
	if resp.RefreshToken != "" {
		b = jsonstr.Append(append(b, `,"refresh_token":`...), resp.RefreshToken)
	}
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"], h["Content-Length"] = headerJSON, []string{strconv.Itoa(len(b))}
	w.Write(b)
	*bp = b
	answerBufs.Put(bp)
}

// bodyBufs hold request bodies while they are parsed.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var errFormEncoding = errors.New("not valid form encoding")

// readForm reads an application/x-www-form-urlencoded body of at most
// max bytes and parses it as url.ParseQuery does (a semicolon or a bad
// escape is an error), without its intermediate copies. tooBig reports a
// body past max.
func readForm(r io.Reader, max int64) (values url.Values, tooBig bool, err error) {
	bp := bodyBufs.Get().(*[]byte)
	defer func() { bodyBufs.Put(bp) }()
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, rerr := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			*bp = b[:0]
			return nil, true, nil
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			*bp = b[:0]
			var tooLarge *http.MaxBytesError
			if errors.As(rerr, &tooLarge) {
				return nil, true, nil
			}
			return nil, false, rerr
		}
	}
	*bp = b[:0]
	body := string(b) // one copy; names and values are slices of it
	values = make(url.Values, 8)
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if strings.Contains(pair, ";") {
			return nil, false, errFormEncoding
		}
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		if name, err = unescape(name); err != nil {
			return nil, false, errFormEncoding
		}
		if value, err = unescape(value); err != nil {
			return nil, false, errFormEncoding
		}
		values[name] = append(values[name], value)
	}
	return values, false, nil
}

func unescape(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}
