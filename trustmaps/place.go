package trustmaps

import (
	"context"
	"net/netip"
	"slices"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
)

// Place is where an address is, as a geolocation database knows it; the
// zero value is an address it does not know.
type Place struct {
	Country   string `json:"country,omitempty"`   // ISO 3166-1 alpha-2
	Continent string `json:"continent,omitempty"` // two-letter code: EU, NA…
	ASN       int64  `json:"asn,omitempty"`       // autonomous system number
}

// Places locates addresses (a MaxMind-format database). Implementations
// must be safe for concurrent use and answer the zero Place for an address
// they do not know.
type Places interface {
	Place(addr netip.Addr) Place
}

// Options configure Compile.
type Options struct {
	// Places answers the geolocation helpers. Without it, a map that uses
	// them does not compile.
	Places Places
	// Providers, when set, names the providers configured now: a Policy
	// logs every map in force that names another (it never matches; see
	// Engine.UnknownProviders). It does not stop a map from compiling: a
	// provider may be added after the map that names it.
	Providers func(context.Context) ([]string, error)
}

// geoOverloads are the CEL overloads that need Places.
var geoOverloads = []string{"ip_country", "ip_continent", "ip_asn", "ip_in_country_list"}

// geoFunctions declares ip(s).country(), .continent(), .asn() and
// .in_country([…]). An unknown address gives "", 0 and false.
func (c *celEnv) geoFunctions() []cel.EnvOption {
	place := func(v ref.Val) (Place, ref.Val) {
		if c.places == nil { // unreachable: such maps do not compile
			return Place{}, types.NewErr("no geolocation database is configured (geoip.database)")
		}
		return c.places.Place(v.(ext.IP).Addr.Unmap()), nil
	}
	return []cel.EnvOption{
		cel.Function("country", cel.MemberOverload("ip_country", []*cel.Type{ext.IPType}, cel.StringType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				p, err := place(v)
				if err != nil {
					return err
				}
				return types.String(p.Country)
			}))),
		cel.Function("continent", cel.MemberOverload("ip_continent", []*cel.Type{ext.IPType}, cel.StringType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				p, err := place(v)
				if err != nil {
					return err
				}
				return types.String(p.Continent)
			}))),
		cel.Function("asn", cel.MemberOverload("ip_asn", []*cel.Type{ext.IPType}, cel.IntType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				p, err := place(v)
				if err != nil {
					return err
				}
				return types.Int(p.ASN)
			}))),
		cel.Function("in_country", cel.MemberOverload("ip_in_country_list", []*cel.Type{ext.IPType, cel.ListType(cel.StringType)}, cel.BoolType,
			cel.BinaryBinding(func(v, list ref.Val) ref.Val {
				p, err := place(v)
				if err != nil {
					return err
				}
				if p.Country == "" {
					return types.False
				}
				return list.(traits.Lister).Contains(types.String(p.Country))
			}))),
	}
}

// reads is what an expression reads beyond identity and request.
type reads struct {
	place   bool                // a geolocation helper
	context map[string][]string // posture source → attributes read (nil: the source as a whole)
	// contextAll: the expression reads context other than by a literal
	// source name, so every source may matter.
	contextAll bool
}

// readsOf walks a checked expression.
func readsOf(a *celast.AST) reads {
	r := reads{context: map[string][]string{}}
	for _, ref := range a.ReferenceMap() {
		for _, o := range ref.OverloadIDs {
			if slices.Contains(geoOverloads, o) {
				r.place = true
			}
		}
	}
	r.walk(a.Expr())
	return r
}

// contextSource reports the source e selects when e is context.x,
// context.?x or context["x"].
func contextSource(e celast.Expr) (string, bool) {
	isContext := func(x celast.Expr) bool { return x.Kind() == celast.IdentKind && x.AsIdent() == "context" }
	switch e.Kind() {
	case celast.SelectKind:
		if s := e.AsSelect(); isContext(s.Operand()) {
			return s.FieldName(), true
		}
	case celast.CallKind:
		if name, ok := literalIndex(e); ok && isContext(e.AsCall().Args()[0]) {
			return name, true
		}
	}
	return "", false
}

// literalIndex reports the key of x[“k”], x.?k and x[?“k”].
func literalIndex(e celast.Expr) (string, bool) {
	c := e.AsCall()
	switch c.FunctionName() {
	case "_[_]", "_?._", "_[?_]":
	default:
		return "", false
	}
	args := c.Args()
	if len(args) != 2 || args[1].Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := args[1].AsLiteral().(types.String)
	return string(s), ok
}

func (r *reads) source(name string) {
	if _, ok := r.context[name]; !ok {
		r.context[name] = nil
	}
}

func (r *reads) walk(e celast.Expr) {
	if src, ok := contextSource(e); ok {
		r.source(src)
		return
	}
	switch e.Kind() {
	case celast.IdentKind:
		if e.AsIdent() == "context" {
			r.contextAll = true
		}
	case celast.SelectKind:
		s := e.AsSelect()
		if src, ok := contextSource(s.Operand()); ok && !slices.Contains(r.context[src], s.FieldName()) {
			r.context[src] = append(r.context[src], s.FieldName())
		}
		r.walk(s.Operand())
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			r.walk(c.Target())
		}
		if c.FunctionName() != "" && len(c.Args()) == 2 {
			if src, ok := contextSource(c.Args()[0]); ok {
				if attr, ok := literalIndex(e); ok && !slices.Contains(r.context[src], attr) {
					r.context[src] = append(r.context[src], attr)
				}
			}
		}
		for _, a := range c.Args() {
			r.walk(a)
		}
	case celast.ListKind:
		for _, x := range e.AsList().Elements() {
			r.walk(x)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			r.walk(me.Key())
			r.walk(me.Value())
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			r.walk(f.AsStructField().Value())
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []celast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			r.walk(x)
		}
	}
}

// merge adds o to r.
func (r *reads) merge(o reads) {
	r.place = r.place || o.place
	r.contextAll = r.contextAll || o.contextAll
	if r.context == nil {
		r.context = map[string][]string{}
	}
	for src, attrs := range o.context {
		r.source(src)
		for _, a := range attrs {
			if !slices.Contains(r.context[src], a) {
				r.context[src] = append(r.context[src], a)
			}
		}
	}
}

// readsSource reports whether the map's expressions read posture source
// name.
func (r *reads) readsSource(name string) bool {
	if r.contextAll {
		return true
	}
	_, ok := r.context[name]
	return ok
}
