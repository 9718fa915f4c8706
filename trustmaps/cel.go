package trustmaps

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
)

// costLimit bounds the work of one expression evaluation; past it the
// expression errors, and an erroring condition denies.
const costLimit = 100_000

// celEnv is the CEL environment of conditions and client_id expressions,
// with caches for the parsed arguments of its helpers. One per Engine.
type celEnv struct {
	env *cel.Env

	mu      sync.Mutex
	regexps map[string]*regexp.Regexp
	windows map[string]*window
	zones   map[string]*time.Location

	places Places // nil: no geolocation database
}

// The variables every expression sees:
//
//	identity: kind, provider, issuer, subject (strings), attributes (map)
//	request:  audience, grant_type, client_id, source_ip (strings),
//	          scopes (list),
//	          mtls (bool), time (timestamp)
//	context:  posture attributes from attestors or a posture source (map)
//
// Helpers beyond standard CEL (and its optional-field syntax,
// identity.attributes.?team.orValue("")):
//
//	s.glob(pattern)           anchored glob: * any run, ? one character
//	s.fullMatch(re)           anchored RE2 match (standard matches() is not)
//	ip(s).in_cidr(cidr)       network membership; also ip(), cidr() and
//	                          cidr(c).containsIP(ip(s)) from the network extension
//	t.within(spec, zone)      time window: "Mon-Fri 07:00-19:00", "Sat,Sun
//	                          10:00-16:00", "daily 22:00-06:00", in an IANA zone
//	ip(s).country()           ISO country code of the address ("" unknown),
//	ip(s).continent()         its continent code ("" unknown),
//	ip(s).asn()               its autonomous system number (0 unknown),
//	ip(s).in_country(list)    whether its country is one of list; these
//	                          four need a geolocation database (Options.Places)
func newCELEnv(places Places) (*celEnv, error) {
	mapType := cel.MapType(cel.StringType, cel.DynType)
	return newCELEnvWith(places, cel.Variable("identity", mapType), cel.Variable("request", mapType), cel.Variable("context", mapType))
}

// newCELEnvWith is the environment of conditions over other variables.
func newCELEnvWith(places Places, vars ...cel.EnvOption) (*celEnv, error) {
	c := &celEnv{regexps: map[string]*regexp.Regexp{}, windows: map[string]*window{}, zones: map[string]*time.Location{}, places: places}
	opts := append(append(vars,
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Network(),
		cel.Function("glob",
			cel.MemberOverload("string_glob_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(s, p ref.Val) ref.Val {
					return types.Bool(glob(string(s.(types.String)), string(p.(types.String))))
				}))),
		cel.Function("fullMatch",
			cel.MemberOverload("string_fullmatch_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(s, p ref.Val) ref.Val {
					re, err := c.regexp(string(p.(types.String)))
					if err != nil {
						return types.NewErr("fullMatch: %v", err)
					}
					return types.Bool(re.MatchString(string(s.(types.String))))
				}))),
		cel.Function("in_cidr",
			cel.MemberOverload("ip_in_cidr_string", []*cel.Type{ext.IPType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(func(ip, cidr ref.Val) ref.Val {
					prefix, err := netip.ParsePrefix(string(cidr.(types.String)))
					if err != nil {
						return types.NewErr("in_cidr: %q is not a CIDR", string(cidr.(types.String)))
					}
					return types.Bool(prefix.Contains(ip.(ext.IP).Addr))
				}))),
		cel.Function("within",
			cel.MemberOverload("timestamp_within_string_string", []*cel.Type{cel.TimestampType, cel.StringType, cel.StringType}, cel.BoolType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					t := args[0].(types.Timestamp).Time
					ok, err := c.within(t, string(args[1].(types.String)), string(args[2].(types.String)))
					if err != nil {
						return types.NewErr("within: %v", err)
					}
					return types.Bool(ok)
				}))),
	), c.geoFunctions()...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("trustmaps: CEL environment: %w", err)
	}
	c.env = env
	return c, nil
}

// compile type-checks expr, which must give want, and plans it; it says
// what the expression reads beyond identity and request.
func (c *celEnv) compile(expr string, want *cel.Type) (cel.Program, reads, error) {
	ast, iss := c.env.Compile(expr)
	if iss.Err() != nil {
		// One line per issue, "line:column: message", without the source
		// excerpt CEL draws under it.
		var msgs []string
		for _, l := range strings.Split(iss.Err().Error(), "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "ERROR: <input>:") {
				msgs = append(msgs, strings.TrimPrefix(l, "ERROR: <input>:"))
			}
		}
		return nil, reads{}, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	// dyn is checked when evaluated (attributes are dynamic by nature).
	if out := ast.OutputType(); !out.IsExactType(want) && !out.IsExactType(cel.DynType) {
		return nil, reads{}, fmt.Errorf("gives %s, want %s", ast.OutputType(), want)
	}
	rd := readsOf(ast.NativeRep())
	if rd.place && c.places == nil {
		return nil, reads{}, fmt.Errorf("uses geolocation (country, continent, asn, in_country), but no geolocation database is configured (geoip.database)")
	}
	prg, err := c.env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, reads{}, err
	}
	return prg, rd, nil
}

func (c *celEnv) regexp(p string) (*regexp.Regexp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if re, ok := c.regexps[p]; ok {
		return re, nil
	}
	re, err := regexp.Compile(`^(?:` + p + `)$`)
	if err != nil {
		return nil, err
	}
	if len(c.regexps) < 10_000 { // bounded: patterns come from maps, not requests
		c.regexps[p] = re
	}
	return re, nil
}

// glob matches s against pattern as a whole: * matches any run of
// characters (none included), ? exactly one.
func glob(s, pattern string) bool {
	// Iterative matching with backtracking to the last star: linear in
	// practice, never exponential.
	si, pi, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// window is a parsed time window: days of the week and a span of the day.
type window struct {
	days       [7]bool
	start, end int // minutes since midnight; end < start spans midnight
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseWindow reads "<days> HH:MM-HH:MM", days being daily, a day (Mon), a
// range (Mon-Fri) or a list (Sat,Sun).
func parseWindow(spec string) (*window, error) {
	days, span, ok := strings.Cut(strings.TrimSpace(spec), " ")
	if !ok {
		return nil, fmt.Errorf("%q: want \"<days> HH:MM-HH:MM\"", spec)
	}
	w := &window{}
	if strings.EqualFold(days, "daily") {
		w.days = [7]bool{true, true, true, true, true, true, true}
	} else {
		for _, part := range strings.Split(days, ",") {
			from, to, isRange := strings.Cut(part, "-")
			a, okA := dayNames[strings.ToLower(from)]
			b, okB := a, okA
			if isRange {
				b, okB = dayNames[strings.ToLower(to)]
			}
			if !okA || !okB {
				return nil, fmt.Errorf("%q: %q is not a day, a range of days (Mon-Fri) or daily", spec, part)
			}
			for d := a; ; d = (d + 1) % 7 {
				w.days[d] = true
				if d == b {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(strings.TrimSpace(span), "-")
	var err error
	if !ok {
		return nil, fmt.Errorf("%q: want a span HH:MM-HH:MM", spec)
	}
	if w.start, err = minutes(from); err == nil {
		w.end, err = minutes(to)
	}
	if err != nil {
		return nil, fmt.Errorf("%q: %v", spec, err)
	}
	return w, nil
}

func minutes(hhmm string) (int, error) {
	t, err := time.Parse("15:04", hhmm)
	if err != nil {
		if hhmm == "24:00" {
			return 24 * 60, nil
		}
		return 0, fmt.Errorf("%q is not HH:MM", hhmm)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// contains reports whether local time t falls in the window. A span that
// crosses midnight belongs to the day it starts on.
func (w *window) contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if w.start <= w.end {
		return w.days[t.Weekday()] && m >= w.start && m < w.end
	}
	if m >= w.start {
		return w.days[t.Weekday()]
	}
	return m < w.end && w.days[(t.Weekday()+6)%7]
}

func (c *celEnv) within(t time.Time, spec, zone string) (bool, error) {
	c.mu.Lock()
	w, okW := c.windows[spec]
	loc, okZ := c.zones[zone]
	c.mu.Unlock()
	var err error
	if !okW {
		if w, err = parseWindow(spec); err != nil {
			return false, err
		}
	}
	if !okZ {
		if loc, err = time.LoadLocation(zone); err != nil || zone == "" || zone == "Local" {
			return false, fmt.Errorf("%q is not an IANA time zone", zone)
		}
	}
	c.mu.Lock()
	if len(c.windows) < 10_000 {
		c.windows[spec], c.zones[zone] = w, loc
	}
	c.mu.Unlock()
	return w.contains(t.In(loc)), nil
}
