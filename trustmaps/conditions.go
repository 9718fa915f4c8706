package trustmaps

import "cel.dev/cel-go/cel"

// Conditions compiles CEL conditions with the helpers of trust-map
// conditions (glob, fullMatch, in_cidr, within, the network extension,
// geolocation with Places) and their cost limit, over other variables:
// tool policies use it, so that a condition means the same in both.
type Conditions struct{ env *celEnv }

// NewConditions declares vars (cel.Variable) beside the helpers.
func NewConditions(places Places, vars ...cel.EnvOption) (*Conditions, error) {
	env, err := newCELEnvWith(places, vars...)
	if err != nil {
		return nil, err
	}
	return &Conditions{env: env}, nil
}

// Compile type-checks expr, which must give a bool (or dyn, checked when
// evaluated), and plans it with the cost limit.
func (c *Conditions) Compile(expr string) (cel.Program, error) {
	prg, _, err := c.env.compile(expr, cel.BoolType)
	return prg, err
}
