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
}

// Presets lists the preset names.
func Presets() []Preset { return []Preset{Generic, Kubernetes, GitHubActions, GitLab, Google} }

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
