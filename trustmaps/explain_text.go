package trustmaps

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes the trace for a person at a terminal: the decision
// (map, client, audience, scopes, lifetime in words) or the denial's
// reason, then each map of the provider with its conditions' values, then
// the posture and place the maps read.
func (t Trace) WriteText(w io.Writer) error {
	var b strings.Builder
	if d := t.Decision; d != nil {
		fmt.Fprintf(&b, "granted by map %q\n", d.MapID)
		fmt.Fprintf(&b, "  client     %s\n", d.ClientID)
		fmt.Fprintf(&b, "  audience   %s\n", d.Audience)
		fmt.Fprintf(&b, "  scopes     %s\n", strings.Join(d.Scopes, " "))
		if d.TTL > 0 {
			fmt.Fprintf(&b, "  lifetime   %s\n", DurationWords(d.TTL))
		} else {
			fmt.Fprintf(&b, "  lifetime   the issuer's default\n")
		}
		if d.Binding != "" {
			fmt.Fprintf(&b, "  binding    %s\n", d.Binding)
		}
		if d.SingleUse {
			fmt.Fprintf(&b, "  single use\n")
		}
		if len(d.Claims) > 0 {
			claims, _ := json.Marshal(d.Claims)
			fmt.Fprintf(&b, "  claims     %s\n", claims)
		}
	} else {
		fmt.Fprintf(&b, "denied (%s)\n", t.Denial)
	}
	fmt.Fprintf(&b, "\nmaps of provider %q for subject %q:\n", t.Provider, t.Subject)
	if len(t.Maps) == 0 {
		fmt.Fprintf(&b, "  none\n")
	}
	for _, m := range t.Maps {
		fmt.Fprintf(&b, "  %s (priority %d): %s\n", m.ID, m.Priority, m.Outcome)
		for _, c := range m.Conditions {
			fmt.Fprintf(&b, "    %-6s %s\n", c.Value, c.Expr)
		}
	}
	if len(t.Posture) > 0 {
		fmt.Fprintf(&b, "\nposture:\n")
		for _, p := range t.Posture {
			fmt.Fprintf(&b, "  %s: %s", p.Source, p.Status)
			if p.Reason != "" {
				fmt.Fprintf(&b, " (%s)", p.Reason)
			}
			if p.Age != "" {
				fmt.Fprintf(&b, ", %s old", p.Age)
			}
			if len(p.Read) > 0 {
				fmt.Fprintf(&b, "; the maps read %s", strings.Join(p.Read, ", "))
			}
			b.WriteString("\n")
		}
	}
	if p := t.Place; p != nil {
		fmt.Fprintf(&b, "\nplace of %s: country %q, continent %q, AS %d\n", p.SourceIP, p.Country, p.Continent, p.ASN)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DurationWords says d in words: "15 minutes", "1 hour 30 minutes",
// "90 seconds" (whole seconds; "0 seconds" for less).
func DurationWords(d time.Duration) string {
	return DurationIn(d, func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	})
}

// DurationIn says d in whole days, hours, minutes and seconds, each part
// written by unit(n, "day" | "hour" | "minute" | "second"): the words of
// another language. Less than a second is 0 seconds.
func DurationIn(d time.Duration, unit func(n int64, name string) string) string {
	d = d.Truncate(time.Second)
	var parts []string
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if d < u.d {
			continue
		}
		n := d / u.d
		d -= n * u.d
		parts = append(parts, unit(int64(n), u.name))
	}
	if len(parts) == 0 {
		return unit(0, "second")
	}
	return strings.Join(parts, " ")
}
