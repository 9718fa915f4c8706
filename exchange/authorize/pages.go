package authorize

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/text/language"
)

// The pages are server-rendered HTML that works without JavaScript, with
// one stylesheet of our own; nothing else may load, frame or be posted to.

//go:embed web
var web embed.FS

type pages struct{ tmpl *template.Template }

func newPages() (*pages, error) {
	t, err := template.ParseFS(web, "web/*.html")
	if err != nil {
		return nil, fmt.Errorf("authorize: pages: %w", err)
	}
	return &pages{tmpl: t}, nil
}

// assets serves the stylesheet.
func assets() http.Handler {
	sub, _ := fs.Sub(web, "web")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".css") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

// page is what a template sees.
type page struct {
	Lang, Title, Base string
	Dev               bool
	Data              any
	msgs              map[string]string
}

// T translates a message key, formatting args into it.
func (p page) T(key string, args ...any) string {
	m, ok := p.msgs[key]
	if !ok {
		if m, ok = messages["en"][key]; !ok {
			return key
		}
	}
	if len(args) == 0 {
		return m
	}
	return fmt.Sprintf(m, args...)
}

var languages = language.NewMatcher([]language.Tag{language.English, language.French})

// lang is the browser's language among ours, English otherwise.
func lang(r *http.Request) string {
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	_, i, _ := languages.Match(tags...)
	return []string{"en", "fr"}[i]
}

// render writes a page with the headers every page carries. formTarget,
// when set, is the one origin besides ours a form of the page may lead to
// (the client's redirect URI, reached after the consent form's answer).
func (e *Endpoint) render(w http.ResponseWriter, r *http.Request, status int, name string, data any, formTarget string) {
	l := lang(r)
	p := page{Lang: l, Base: e.cfg.Base, Data: data, msgs: messages[l]}
	_, p.Dev = e.cfg.Login.(*DevLogin)
	p.Title = p.T("page_" + name)
	var buf bytes.Buffer
	if err := e.pages.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		e.cfg.Log.Error("browser flow: page", "page", name, "error", err)
		http.Error(w, "page unavailable", http.StatusInternalServerError)
		return
	}
	formAction := "'self'"
	if formTarget != "" {
		formAction += " " + formTarget
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Language", l)
	noCache(w)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage answers a request that must not go back to any client: an
// unknown client, a redirect URI not registered, a bad state. event, when
// set, is audited with attrs.
func (e *Endpoint) errorPage(w http.ResponseWriter, r *http.Request, status int, message, event string, attrs ...attribute.KeyValue) {
	if event != "" {
		e.audit(r.Context(), event, attrs...)
	}
	data := map[string]string{"Message": "error_" + message}
	// A reference a person can quote to an administrator: the request's
	// trace, in the audit log and the spans.
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		data["Reference"] = sc.TraceID().String()
	}
	e.render(w, r, status, "error", data, "")
}

// messages are the pages' words, by language; English is complete.
var messages = map[string]map[string]string{
	"en": {
		"page_error":            "Error",
		"page_devlogin":         "Development sign-in",
		"page_consent":          "Authorize an application",
		"page_consents":         "Your consents",
		"dev_banner":            "Development login: anyone can sign in as anyone. Never use serve --dev for real users.",
		"error_title":           "This request cannot continue",
		"error_reference":       "Reference for your administrator: %s",
		"consents_offline":      "Keep this access while you are away",
		"error_not_redirected":  "You were not sent back to the application, because it could not be verified where to send you. You can close this page.",
		"error_method":          "This page does not take that kind of request.",
		"error_bad_request":     "The request could not be read.",
		"error_invalid_request": "The application's request is not valid.",
		"consent_warn_unvetted": "No administrator has vetted this application: its name is its own claim. Approving sends you to %s.",
		"error_no_client":       "The application did not say who it is (client_id is missing).",
		"error_unknown_client":  "The application is not known to this server, or its client metadata document could not be used.",
		"error_bad_redirect":    "The address the application asked to return to is not one it registered.",
		"error_bad_state":       "This sign-in link is not valid: it was used already, has expired, or was started in another browser. Start again from the application.",
		"error_unavailable":     "The server cannot complete this now. Try again in a moment.",
		"error_login_failed":    "The sign-in did not succeed.",
		"dev_login_title":       "Sign in (development)",
		"dev_login_warning":     "This is the development login of mcpsts serve --dev. It believes any name: it is for trying mcpsts on one machine only.",
		"dev_login_user":        "User name",
		"dev_login_submit":      "Sign in",
		"consent_title":         "%s wants access",
		"consent_intro":         "Signed in as %s. Review what this application asks for.",
		"consent_client":        "Application",
		"consent_redirect":      "Returns to",
		"consent_server":        "MCP server",
		"consent_warn_loopback": "This application runs on your computer. Its name is self-declared and cannot be verified: approve only if you just started it yourself.",
		"consent_warn_first":    "You have never approved this application before. Its name comes from its own metadata document: check the address above.",
		"consent_scopes":        "It will be able to:",
		"consent_no_scopes":     "Use the MCP server with no specific permission.",
		"consent_offline":       "Keep this access while you are away, renewing it for up to %s at a time.",
		"consent_duration":      "Remember this decision for",
		"consent_token_life":    "Each access token it gets lives %s.",
		"consent_approve":       "Approve",
		"consent_deny":          "Deny",
		"unit_day":              "%d day",
		"unit_days":             "%d days",
		"unit_hour":             "%d hour",
		"unit_hours":            "%d hours",
		"unit_minute":           "%d minute",
		"unit_minutes":          "%d minutes",
		"unit_second":           "%d second",
		"unit_seconds":          "%d seconds",
		"duration_1h":           "1 hour",
		"duration_24h":          "1 day",
		"duration_720h":         "30 days",
		"duration_2160h":        "90 days",
		"consents_title":        "Your consents",
		"consents_intro":        "Signed in as %s. These applications may get tokens for you.",
		"consents_access":       "Access",
		"consents_until":        "Until",
		"consents_revoke":       "Revoke",
		"consents_none":         "You have no active consent.",
		"consents_revoked":      "Revoked the consent to %s; its refresh tokens no longer work.",
	},
	"fr": {
		"page_error":            "Erreur",
		"page_devlogin":         "Connexion de développement",
		"page_consent":          "Autoriser une application",
		"page_consents":         "Vos consentements",
		"dev_banner":            "Connexion de développement : n'importe qui peut se connecter sous n'importe quel nom. N'utilisez jamais serve --dev pour de vrais utilisateurs.",
		"error_title":           "Cette demande ne peut pas aboutir",
		"error_reference":       "Référence pour votre administrateur : %s",
		"consents_offline":      "Garder cet accès en votre absence",
		"error_not_redirected":  "Vous n'avez pas été renvoyé vers l'application, car l'adresse de retour n'a pas pu être vérifiée. Vous pouvez fermer cette page.",
		"error_method":          "Cette page n'accepte pas ce type de requête.",
		"error_bad_request":     "La requête n'a pas pu être lue.",
		"error_invalid_request": "La requête de l'application n'est pas valide.",
		"consent_warn_unvetted": "Aucun administrateur n'a vérifié cette application : son nom est celui qu'elle se donne. Approuver vous envoie vers %s.",
		"error_no_client":       "L'application ne s'est pas identifiée (client_id manquant).",
		"error_unknown_client":  "L'application est inconnue de ce serveur, ou son document de métadonnées est inutilisable.",
		"error_bad_redirect":    "L'adresse de retour demandée n'est pas une adresse enregistrée par l'application.",
		"error_bad_state":       "Ce lien de connexion n'est pas valide : déjà utilisé, expiré ou ouvert dans un autre navigateur. Recommencez depuis l'application.",
		"error_unavailable":     "Le serveur ne peut pas terminer maintenant. Réessayez dans un instant.",
		"error_login_failed":    "La connexion a échoué.",
		"dev_login_title":       "Connexion (développement)",
		"dev_login_warning":     "Connexion de développement de mcpsts serve --dev : elle accepte n'importe quel nom, pour essayer mcpsts sur une seule machine.",
		"dev_login_user":        "Nom d'utilisateur",
		"dev_login_submit":      "Se connecter",
		"consent_title":         "%s demande un accès",
		"consent_intro":         "Connecté en tant que %s. Vérifiez ce que demande cette application.",
		"consent_client":        "Application",
		"consent_redirect":      "Retour vers",
		"consent_server":        "Serveur MCP",
		"consent_warn_loopback": "Cette application s'exécute sur votre ordinateur. Son nom est déclaré par elle-même et ne peut pas être vérifié : n'approuvez que si vous venez de la lancer.",
		"consent_warn_first":    "Vous n'avez jamais approuvé cette application. Son nom vient de son propre document de métadonnées : vérifiez l'adresse ci-dessus.",
		"consent_scopes":        "Elle pourra :",
		"consent_no_scopes":     "Utiliser le serveur MCP sans permission particulière.",
		"consent_offline":       "Garder cet accès en votre absence, renouvelé pour %s au plus à chaque fois.",
		"consent_duration":      "Se souvenir de cette décision pendant",
		"consent_token_life":    "Chaque jeton d'accès obtenu vit %s.",
		"consent_approve":       "Approuver",
		"consent_deny":          "Refuser",
		"unit_day":              "%d jour",
		"unit_days":             "%d jours",
		"unit_hour":             "%d heure",
		"unit_hours":            "%d heures",
		"unit_minute":           "%d minute",
		"unit_minutes":          "%d minutes",
		"unit_second":           "%d seconde",
		"unit_seconds":          "%d secondes",
		"duration_1h":           "1 heure",
		"duration_24h":          "1 jour",
		"duration_720h":         "30 jours",
		"duration_2160h":        "90 jours",
		"consents_title":        "Vos consentements",
		"consents_intro":        "Connecté en tant que %s. Ces applications peuvent obtenir des jetons pour vous.",
		"consents_access":       "Accès",
		"consents_until":        "Jusqu'au",
		"consents_revoke":       "Révoquer",
		"consents_none":         "Vous n'avez aucun consentement actif.",
		"consents_revoked":      "Consentement à %s révoqué ; ses jetons de rafraîchissement ne fonctionnent plus.",
	},
}
