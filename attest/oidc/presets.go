package oidc

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/mcpsts/mcpsts/attest"
)

// Preset names a platform's claim shape.
type Preset string

// The presets.
const (
	// Generic keeps the claims as they are.
	Generic Preset = "generic"
	// Kubernetes service-account tokens: sub
	// system:serviceaccount:<namespace>:<name> gives namespace and
	// service_account; the kubernetes.io claim gives pod_name, pod_uid,
	// node_name, node_uid and service_account_uid.
	Kubernetes Preset = "kubernetes"
	// GitHubActions ID tokens: repository, repository_owner, repository_id,
	// ref, ref_type, environment, workflow_ref, job_workflow_ref,
	// event_name and runner_environment are attributes as they come; ref_name
	// is ref without refs/heads/ or refs/tags/; ref_protected becomes a bool.
	GitHubActions Preset = "github-actions"
	// GitLab CI ID tokens: project_path, namespace_path, ref and
	// environment as they come; ref_protected and environment_protected
	// become bools.
	GitLab Preset = "gitlab"
	// Google ID tokens: service-account ID tokens and Compute Engine
	// instance identity tokens (format=full). email is kept only with
	// email_verified true (a token with an unverified email is refused);
	// the google.compute_engine claim gives project_id, project_number (a
	// decimal string), zone, instance_id, instance_name and
	// instance_creation_timestamp, and its fields must all be present.
	Google Preset = "google"
	// Azure (Microsoft Entra ID) access tokens of a managed identity or
	// workload identity, v1 or v2: tid and oid required; appid is v1's appid
	// or v2's azp; xms_mirid (and xms_az_rid) give subscription,
	// resource_group, resource_provider, resource_type and resource_name
	// (az_* for xms_az_rid). An iss of Microsoft's shape must name the
	// token's tid.
	Azure Preset = "azure"
)

type preset struct {
	required []string
	parse    func(sub string, attrs map[string]any) error
}

var presets = map[Preset]preset{
	Generic:    {parse: func(string, map[string]any) error { return nil }},
	Kubernetes: {required: []string{"kubernetes.io"}, parse: parseKubernetes},
	GitHubActions: {
		required: []string{"repository", "repository_id", "repository_owner", "ref", "ref_type",
			"workflow_ref", "job_workflow_ref", "event_name", "runner_environment"},
		parse: func(_ string, a map[string]any) error {
			if ref, ok := a["ref"].(string); ok {
				a["ref_name"] = strings.TrimPrefix(strings.TrimPrefix(ref, "refs/heads/"), "refs/tags/")
			}
			return boolClaims(a, "ref_protected")
		},
	},
	GitLab: {
		required: []string{"project_path", "namespace_path", "ref", "ref_protected"},
		parse: func(_ string, a map[string]any) error {
			return boolClaims(a, "ref_protected", "environment_protected")
		},
	},
	Google: {required: []string{"azp"}, parse: parseGoogle},
	Azure:  {required: []string{"tid", "oid"}, parse: parseAzure},
}

// Presets lists the preset names.
func Presets() []Preset { return []Preset{Generic, Kubernetes, GitHubActions, GitLab, Google, Azure} }

func parseAzure(_ string, a map[string]any) error {
	tid, _ := a["tid"].(string)
	oid, _ := a["oid"].(string)
	if tid == "" || oid == "" {
		return attest.Invalid("invalid_claims", "tid and oid must be non-empty strings")
	}
	iss, _ := a["iss"].(string)
	for _, host := range []string{"https://sts.windows.net/", "https://login.microsoftonline.com/"} {
		if rest, ok := strings.CutPrefix(iss, host); ok {
			if tenant, _, _ := strings.Cut(rest, "/"); tenant != tid {
				return attest.Invalid("wrong_tenant", "tid does not match the issuer's tenant")
			}
		}
	}
	switch appid, azp := a["appid"], a["azp"]; {
	case appid != nil && azp != nil && appid != azp:
		return attest.Invalid("invalid_claims", "appid and azp disagree")
	case azp != nil:
		a["appid"] = azp
	}
	if v, ok := a["appid"]; ok {
		if s, _ := v.(string); s == "" {
			return attest.Invalid("invalid_claims", "appid is not a non-empty string")
		}
	}
	for claim, prefix := range map[string]string{"xms_mirid": "", "xms_az_rid": "az_"} {
		v, ok := a[claim]
		if !ok {
			continue
		}
		id, _ := v.(string)
		parts, err := azureResourceID(id)
		if err != nil {
			return attest.Invalid("invalid_claims", claim+": "+err.Error())
		}
		for k, val := range parts {
			a[prefix+k] = val
		}
	}
	return nil
}

// azureResourceID splits
// /subscriptions/S/resourcegroups/G/providers/P/T/N (segment names in any
// case, as Azure writes them both ways).
func azureResourceID(id string) (map[string]string, error) {
	seg := strings.Split(id, "/")
	if len(seg) != 9 || seg[0] != "" || !strings.EqualFold(seg[1], "subscriptions") ||
		!strings.EqualFold(seg[3], "resourcegroups") || !strings.EqualFold(seg[5], "providers") {
		return nil, fmt.Errorf("not /subscriptions/…/resourcegroups/…/providers/NAMESPACE/TYPE/NAME")
	}
	for _, s := range seg[1:] {
		if s == "" {
			return nil, fmt.Errorf("empty segment")
		}
	}
	return map[string]string{
		"subscription": seg[2], "resource_group": seg[4], "resource_provider": seg[6],
		"resource_type": seg[7], "resource_name": seg[8],
	}, nil
}

func parseGoogle(_ string, a map[string]any) error {
	if err := boolClaims(a, "email_verified"); err != nil {
		return err
	}
	if _, ok := a["email"]; ok && a["email_verified"] != true {
		return attest.Invalid("unverified_email", "email is present but email_verified is not true")
	}
	g, ok := a["google"]
	if !ok {
		return nil // a service-account ID token
	}
	gm, _ := g.(map[string]any)
	ce, ok := gm["compute_engine"].(map[string]any)
	if !ok {
		return attest.Invalid("invalid_claims", "google.compute_engine is not an object")
	}
	for _, f := range []string{"project_id", "zone", "instance_id", "instance_name"} {
		v, ok := ce[f].(string)
		if !ok || v == "" {
			return attest.Invalid("invalid_claims", "google.compute_engine."+f+" is not a non-empty string")
		}
		a[f] = v
	}
	for _, f := range []string{"project_number", "instance_creation_timestamp"} {
		n, ok := ce[f].(float64)
		if !ok || n < 0 || n != math.Trunc(n) || n > 1<<53 {
			return attest.Invalid("invalid_claims", "google.compute_engine."+f+" is not a whole number")
		}
		if f == "project_number" {
			a[f] = strconv.FormatInt(int64(n), 10)
		} else {
			a[f] = int64(n)
		}
	}
	return nil
}

func parseKubernetes(sub string, a map[string]any) error {
	parts := strings.Split(sub, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return attest.Invalid("not_a_service_account", fmt.Sprintf("sub %q is not system:serviceaccount:<namespace>:<name>", truncate(sub)))
	}
	a["namespace"], a["service_account"] = parts[2], parts[3]
	k8s, ok := a["kubernetes.io"].(map[string]any)
	if !ok {
		return attest.Invalid("invalid_claims", "kubernetes.io is not an object")
	}
	if ns, ok := k8s["namespace"].(string); ok && ns != parts[2] {
		return attest.Invalid("invalid_claims", "kubernetes.io.namespace disagrees with sub")
	}
	for _, f := range []struct{ obj, field, attr string }{
		{"pod", "name", "pod_name"}, {"pod", "uid", "pod_uid"},
		{"node", "name", "node_name"}, {"node", "uid", "node_uid"},
		{"serviceaccount", "uid", "service_account_uid"},
	} {
		if o, ok := k8s[f.obj].(map[string]any); ok {
			if v, ok := o[f.field].(string); ok {
				a[f.attr] = v
			}
		}
	}
	if sa, ok := k8s["serviceaccount"].(map[string]any); ok {
		if name, ok := sa["name"].(string); ok && name != parts[3] {
			return attest.Invalid("invalid_claims", "kubernetes.io.serviceaccount.name disagrees with sub")
		}
	}
	return nil
}

// boolClaims turns "true"/"false" string claims into booleans.
func boolClaims(a map[string]any, names ...string) error {
	for _, n := range names {
		switch a[n] {
		case "true", true:
			a[n] = true
		case "false", false:
			a[n] = false
		case nil:
		default:
			return attest.Invalid("invalid_claims", fmt.Sprintf("%s is not true or false", n))
		}
	}
	return nil
}
