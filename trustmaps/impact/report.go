package impact

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Write writes the report as text, json or markdown.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "markdown":
		return r.write(w, true)
	case "", "text":
		return r.write(w, false)
	}
	return fmt.Errorf("format %q is not text, json or markdown", format)
}

func (r *Report) write(w io.Writer, md bool) error {
	var b strings.Builder
	heading := func(s string) {
		if md {
			fmt.Fprintf(&b, "\n### %s\n\n", s)
		} else {
			fmt.Fprintf(&b, "\n%s\n", s)
		}
	}
	if md {
		b.WriteString("## Impact of the proposed trust maps\n\n")
	}
	fmt.Fprintf(&b, "%d decisions replayed: %d lose access, %d gain access, %d change, %d unchanged; %d not replayable, %d outside the window\n",
		r.Replayed, count(r.Lose), count(r.Gain), count(r.Change), r.Unchanged, r.NotReplayable, r.OutsideWindow)
	for _, sec := range []struct {
		title  string
		groups []Group
	}{{"Lose access", r.Lose}, {"Gain access", r.Gain}, {"Change", r.Change}} {
		if len(sec.groups) == 0 {
			continue
		}
		heading(fmt.Sprintf("%s (%d identities and requests, %d decisions)", sec.title, len(sec.groups), count(sec.groups)))
		if md {
			b.WriteString("| identity | grant | audience | scopes | before | after | decisions | example |\n|---|---|---|---|---|---|---|---|\n")
		}
		for _, g := range sec.groups {
			before, after := describe(g.Before), describe(g.After)
			if len(g.Changes) > 0 {
				after += " (" + strings.Join(g.Changes, ", ") + ")"
			}
			if md {
				fmt.Fprintf(&b, "| `%s/%s` | %s | %s | %s | %s | %s | %d | `%s` %s |\n", g.Provider, g.Subject, shortGrant(g.GrantType), g.Audience,
					g.Scopes, before, after, g.Count, g.ExampleTrace, g.ExampleTime.UTC().Format("2006-01-02T15:04:05Z"))
				continue
			}
			fmt.Fprintf(&b, "  %s/%s %s %s [%s]: %s → %s; %d decisions, e.g. trace %s at %s\n", g.Provider, g.Subject, shortGrant(g.GrantType),
				g.Audience, g.Scopes, before, after, g.Count, g.ExampleTrace, g.ExampleTime.UTC().Format("2006-01-02T15:04:05Z"))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func count(gs []Group) int {
	n := 0
	for _, g := range gs {
		n += g.Count
	}
	return n
}

func describe(o Outcome) string {
	if !o.Allowed {
		return "denied (" + o.Reason + ")"
	}
	s := "map " + o.MapID + ", client " + o.ClientID
	if len(o.Scopes) > 0 {
		s += ", scopes " + strings.Join(o.Scopes, " ")
	}
	return s
}

func shortGrant(g string) string {
	if i := strings.LastIndex(g, ":"); i >= 0 {
		return g[i+1:]
	}
	return g
}
