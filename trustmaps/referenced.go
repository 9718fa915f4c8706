package trustmaps

import (
	"regexp"
	"slices"
)

var (
	// identity.attributes.name, identity.attributes.?name (optional),
	// identity.attributes["name"].
	attrSelect = regexp.MustCompile(`identity\.attributes\s*(?:\.\s*\??\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:"([^"]*)"|'([^']*)')\s*\])`)
	// identity.attributes itself, not followed by a selection.
	attrWhole = regexp.MustCompile(`identity\.attributes\s*($|[^.\[\s])`)
)

// ReferencedAttributes returns the names of the identity attributes the
// maps' conditions and client ID expressions read, sorted, and whether some
// expression reads the attributes as a whole (then every attribute may
// matter). The audit log records these attributes of each decision, so
// that a proposed change of the maps can be replayed against it.
func (e *Engine) ReferencedAttributes() (names []string, all bool) {
	e.refOnce.Do(func() { e.refNames, e.refAll = e.referenced() })
	return e.refNames, e.refAll
}

func (e *Engine) referenced() (names []string, all bool) {
	seen := map[string]bool{}
	for _, m := range e.maps {
		exprs := slices.Clone(m.Match.Conditions)
		if m.Grant.ClientIDExpr != "" {
			exprs = append(exprs, m.Grant.ClientIDExpr)
		}
		for _, x := range exprs {
			for _, sm := range attrSelect.FindAllStringSubmatch(x, -1) {
				for _, name := range sm[1:] {
					if name != "" {
						seen[name] = true
					}
				}
			}
			if attrWhole.MatchString(x) {
				all = true
			}
		}
	}
	for name := range seen {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, all
}
