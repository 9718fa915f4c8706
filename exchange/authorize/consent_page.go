package authorize

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// scopeLine is one scope on the consent screen.
type scopeLine struct{ Name, Description string }

// duration is one choice of how long a consent lasts.
type duration struct {
	Value, Label string
	Selected     bool
}

// askConsent shows the consent screen: the flow waits under the form's
// CSRF token, which only this browser (its cookie) can use, once.
func (e *Endpoint) askConsent(w http.ResponseWriter, r *http.Request, f Flow) {
	e.showAt(w, r, f, PathConsent, nil)
}

// consentPage shows the consent screen of f at GET /consent?page=…; its
// form sends csrf back.
func (e *Endpoint) consentPage(w http.ResponseWriter, r *http.Request, f Flow, csrf string) {
	ctx := r.Context()
	client, err := e.cfg.Clients.BrowserClient(ctx, f.ClientID)
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	before, err := e.cfg.Consents.Consents(ctx, f.Provider, f.Subject, f.ClientID)
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	var scopes []scopeLine
	for _, s := range f.Granted {
		scopes = append(scopes, scopeLine{Name: s, Description: e.describe(lang(r), s)})
	}
	var durations []duration
	for _, d := range consentDurations {
		durations = append(durations, duration{Value: d.String(), Label: "duration_" + human(d), Selected: d == 30*24*time.Hour})
	}
	name := client.Name
	if name == "" {
		name = client.ID
	}
	redirect, _ := url.Parse(f.RedirectURI)
	e.render(w, r, http.StatusOK, "consent", map[string]any{
		"ClientName": name, "ClientID": client.ID, "RedirectHost": redirect.Host, "Server": f.Resource,
		"User": f.Subject, "Scopes": scopes, "Offline": f.Offline, "RefreshTTL": words(lang(r), e.cfg.RefreshTTL),
		"TokenTTL": words(lang(r), f.TTL), "Durations": durations, "CSRF": csrf,
		"Loopback": loopbackOnly(client.RedirectURIs), "FirstSeen": client.Document && !hasActive(before, e.cfg.Clock()),
		"Unvetted": client.Unvetted && !loopbackOnly(client.RedirectURIs),
	}, Origin(f.RedirectURI))
}

// describe is a scope's description in the page's language, or the
// configured default.
func (e *Endpoint) describe(l, scope string) string {
	if d := e.cfg.ScopeDescriptionsByLanguage[l][scope]; d != "" {
		return d
	}
	return e.cfg.ScopeDescriptions[scope]
}

// hasActive reports an active consent among cs: a withdrawn or expired
// one is not "seen before".
func hasActive(cs []consent.Consent, now time.Time) bool {
	return slices.ContainsFunc(cs, func(c consent.Consent) bool { return c.Active(now) })
}

// loopbackOnly reports a client that can only be redirected to the
// person's own machine: a native app, whose name nobody vouches for.
func loopbackOnly(uris []string) bool {
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			return false
		}
		if ip := net.ParseIP(p.Hostname()); !(p.Hostname() == "localhost" || ip != nil && ip.IsLoopback()) {
			return false
		}
	}
	return len(uris) > 0
}

// words says a lifetime in the page's language: "15 minutes", "24 heures"
// (0 is the issuer's default, 15 minutes).
func words(l string, d time.Duration) string {
	if d == 0 {
		d = 15 * time.Minute
	}
	return trustmaps.DurationIn(d, func(n int64, unit string) string {
		key := "unit_" + unit
		if n != 1 {
			key += "s"
		}
		return fmt.Sprintf(messages[l][key], n)
	})
}

// human writes a duration as the key of its label: 15m, 1h, 24h.
func human(d time.Duration) string {
	if d == 0 {
		d = 15 * time.Minute // the issuer's default
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// consents is the page where a person sees and revokes their consents.
// GET signs the person in (every visit: no session outlives the flow) and
// then shows the list at GET ?page=…; POST revokes one, with the page's
// CSRF token, and shows the list again at a page of its own.
func (e *Endpoint) consents(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Query().Has(pageParam):
		f, csrf, ok := e.page(w, r, PurposeConsents)
		if ok {
			e.listConsents(w, r, f, csrf, r.URL.Query().Get("revoked"))
		}
	case r.Method == http.MethodGet:
		e.startLogin(w, r, Flow{Purpose: PurposeConsents})
	case r.Method == http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		f, ok := e.take(w, r, r.PostFormValue("csrf"))
		if !ok {
			return
		}
		if f.Purpose != PurposeConsents || f.Subject == "" {
			e.errorPage(w, r, http.StatusBadRequest, "bad_state", "login.csrf", attribute.String(attrReason, "consents form token of another step"))
			return
		}
		e.revoke(w, r, f, r.PostFormValue("revoke"))
	default:
		e.errorPage(w, r, http.StatusMethodNotAllowed, "method", "")
	}
}

// revoke withdraws one of the signed-in person's consents and the refresh
// tokens it allowed, then shows the list again.
func (e *Endpoint) revoke(w http.ResponseWriter, r *http.Request, f Flow, id string) {
	ctx := r.Context()
	mine, err := e.cfg.Consents.Consents(ctx, f.Provider, f.Subject, "")
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	i := slices.IndexFunc(mine, func(c consent.Consent) bool {
		return c.ID == id && c.Provider == f.Provider && c.User == f.Subject
	})
	if i < 0 {
		e.errorPage(w, r, http.StatusBadRequest, "bad_state", "consent.revoke_refused", attribute.String(attrProvider, f.Provider),
			attribute.String(attrSubject, bound(f.Subject)), attribute.String(attrConsent, bound(id)), attribute.String(attrReason, "not the person's consent"))
		return
	}
	c := mine[i]
	if err := e.cfg.Consents.RevokeConsent(ctx, c.ID); err != nil {
		e.unavailable(w, r, err)
		return
	}
	if err := e.cfg.Flows.RevokeGrants(ctx, c.Provider, c.User, c.ClientID); err != nil {
		e.unavailable(w, r, err)
		return
	}
	e.audit(ctx, "consent.revoke", attribute.String(attrProvider, c.Provider), attribute.String(attrSubject, bound(c.User)),
		attribute.String(attrClientID, c.ClientID), attribute.String(attrConsent, c.ID))
	e.showAt(w, r, f, PathConsents, url.Values{"revoked": {c.ClientID}})
}

// listConsents shows the person's active consents; the flow waits under
// the page's CSRF token for one revocation.
func (e *Endpoint) listConsents(w http.ResponseWriter, r *http.Request, f Flow, csrf, revoked string) {
	ctx := r.Context()
	all, err := e.cfg.Consents.Consents(ctx, f.Provider, f.Subject, "")
	if err != nil {
		e.unavailable(w, r, err)
		return
	}
	now := e.cfg.Clock()
	active := slices.DeleteFunc(all, func(c consent.Consent) bool { return !c.Active(now) || c.Provider != f.Provider || c.User != f.Subject })
	// Each as the consent screen showed it: the client's name, each
	// scope's description.
	type row struct {
		consent.Consent
		ClientName string
		Scopes     []scopeLine
	}
	rows := make([]row, len(active))
	for i, c := range active {
		rows[i] = row{Consent: c, ClientName: c.ClientID}
		if client, err := e.cfg.Clients.BrowserClient(ctx, c.ClientID); err == nil && client.Name != "" {
			rows[i].ClientName = client.Name
		}
		for _, s := range c.Scopes {
			rows[i].Scopes = append(rows[i].Scopes, scopeLine{Name: s, Description: e.describe(lang(r), s)})
		}
	}
	e.render(w, r, http.StatusOK, "consents", map[string]any{"User": f.Subject, "Consents": rows, "CSRF": csrf, "Revoked": revoked}, "")
}
