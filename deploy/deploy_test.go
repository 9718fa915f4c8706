// Package deploy_test checks the Kubernetes manifests of deploy/ by
// decoding them into the k8s.io/api types and asserting what the
// replicated shape needs, and the Dockerfile's build by running its build
// command.
package deploy_test

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// objects decodes a multi-document manifest, strictly: a field the API
// types do not have is an error.
func objects(t *testing.T, file string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = []byte(doc)
	}
	return out
}

func decode(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
}

// hardened checks a container's and its pod's security settings.
func hardened(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: the pod does not run as non-root", name)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no security context", name, c.Name)
			continue
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: privilege escalation allowed", name, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: the root filesystem is writable", name, c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s/%s: privileged", name, c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Errorf("%s/%s: capabilities not dropped", name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: requests and limits of CPU and memory are required", name, c.Name)
		}
	}
}

// TestManifests: the replicated shape, as deploy/mcpsts.yaml describes it.
func TestManifests(t *testing.T) {
	objs := objects(t, "mcpsts.yaml")
	var dep appsv1.Deployment
	decode(t, objs["Deployment/mcpsts"], &dep)
	var pdb policyv1.PodDisruptionBudget
	decode(t, objs["PodDisruptionBudget/mcpsts"], &pdb)
	var np networkingv1.NetworkPolicy
	decode(t, objs["NetworkPolicy/mcpsts"], &np)
	var cm corev1.ConfigMap
	decode(t, objs["ConfigMap/mcpsts-config"], &cm)
	var sec corev1.Secret
	decode(t, objs["Secret/mcpsts-secrets"], &sec)
	var svc corev1.Service
	decode(t, objs["Service/mcpsts"], &svc)

	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Error("fewer than 2 replicas")
	}
	labels := dep.Spec.Template.Labels
	for what, sel := range map[string]map[string]string{"pdb": pdb.Spec.Selector.MatchLabels, "network policy": np.Spec.PodSelector.MatchLabels, "deployment": dep.Spec.Selector.MatchLabels, "service": svc.Spec.Selector} {
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("the %s selects %s=%s, which the pods do not carry", what, k, v)
			}
		}
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
		t.Error("the PodDisruptionBudget must keep at least one replica and allow one to go")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Error("the NetworkPolicy does not restrict both directions")
	}
	pod := dep.Spec.Template.Spec
	hardened(t, "mcpsts", pod)
	c := pod.Containers[0]
	for probe, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probe || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("no HTTPS probe on %s", probe)
		}
	}
	fromSecret := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == sec.Name {
			fromSecret[e.Name] = true
		}
		if e.Value != "" && (e.Name == config.KEKEnv || e.Name == "MCPSTS_STORE") {
			t.Errorf("%s is in the manifest, not in a Secret", e.Name)
		}
	}
	if !fromSecret[config.KEKEnv] || !fromSecret["MCPSTS_STORE"] {
		t.Errorf("the KEK and the database URL must come from the Secret: %v", fromSecret)
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = m.MountPath
	}
	configured := false
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && mounted[v.Name] == "/etc/mcpsts/mcpsts.yaml" {
			configured = true
		}
	}
	if !configured {
		t.Error("the configuration is not the ConfigMap's mcpsts.yaml at /etc/mcpsts/mcpsts.yaml")
	}
	if mounted["data"] != "/var/lib/mcpsts" {
		t.Error("no writable data directory at /var/lib/mcpsts (the root filesystem is read-only)")
	}
	// The configuration itself parses (files it names exist only in the
	// pod), and so does the trust map beside it.
	if _, _, err := config.Parse("mcpsts.yaml", []byte(cm.Data["mcpsts.yaml"])); err != nil {
		t.Errorf("the ConfigMap's configuration: %v", err)
	}
	if _, err := trustmaps.Compile(trustmaps.Document{Name: "agent.yaml", Data: []byte(cm.Data["agent.yaml"])}); err != nil {
		t.Errorf("the ConfigMap's trust map: %v", err)
	}
}

// TestAgentExample: the example agent gets its token with its projected
// service-account token, for the broker's audience, through --exec.
func TestAgentExample(t *testing.T) {
	objs := objects(t, "agent-example.yaml")
	var dep appsv1.Deployment
	decode(t, objs["Deployment/example-agent"], &dep)
	pod := dep.Spec.Template.Spec
	hardened(t, "example-agent", pod)
	var projected *corev1.ServiceAccountTokenProjection
	for _, v := range pod.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					projected = s.ServiceAccountToken
				}
			}
		}
	}
	if projected == nil || projected.Audience != "https://sts.example.com" || projected.ExpirationSeconds == nil {
		t.Fatalf("no projected service-account token for the broker: %+v", projected)
	}
	cmd := strings.Join(pod.Containers[0].Command, " ")
	if !strings.Contains(cmd, "mcpsts token --source k8s") || !strings.Contains(cmd, "--exec -- ") {
		t.Fatalf("the agent does not start through mcpsts token --exec: %s", cmd)
	}
}

// TestDockerfileBuild runs the Dockerfile's build command as it is written
// there (Docker may not run here): a static binary that runs.
// buildBudget bounds TestDockerfileBuild's build (about 12 s with a warm
// cache, minutes with a cold one).
const buildBudget = 8 * time.Minute

func TestDockerfileBuild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux/amd64")
	}
	df, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 GOOS=linux go build .*) -o /out/mcpsts (\./cmd/mcpsts)$`).FindSubmatch(df)
	if m == nil {
		t.Fatal("the Dockerfile has no build line of the form this test runs")
	}
	for _, want := range [][]byte{[]byte("FROM gcr.io/distroless/static"), []byte("USER 65532:65532"), []byte(`ENTRYPOINT ["/usr/local/bin/mcpsts", "serve", "--config", "/etc/mcpsts/mcpsts.yaml"]`)} {
		if !bytes.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %s", want)
		}
	}
	out := filepath.Join(t.TempDir(), "mcpsts")
	// The RUN line as the image's shell runs it, the output moved here.
	// Its flags (CGO_ENABLED=0, -trimpath) build apart from the tests'
	// own builds: from a cold cache on a small machine that takes
	// minutes, so the build gets a budget within the test binary's
	// timeout and says so when it runs out.
	budget := buildBudget
	if d, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(d)-time.Minute)
	}
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", string(m[1])+` -o "$OUT" `+string(m[2]))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "OUT="+out)
	cmd.WaitDelay = 10 * time.Second
	if b, err := cmd.CombinedOutput(); ctx.Err() != nil {
		t.Skipf("the Dockerfile's build did not finish within its budget of %s here (a cold build cache on a slow machine: "+
			"what it compiled is cached, so a second run goes further); run it alone with go test -timeout 30m -run TestDockerfileBuild ./deploy", budget.Round(time.Second))
	} else if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary is dynamically linked: it would not run on distroless/static")
		}
	}
	if b, err := exec.Command(out, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "mcpsts") {
		t.Fatalf("mcpsts version: %s %v", b, err)
	}
}

// TestGatewaySidecar: the gateway in front of an MCP server in the same
// pod: the server on loopback only, the gateway's configuration valid for
// `mcpsts gateway` (its upstream loopback), probes on /readyz and /healthz
// over HTTPS, every container hardened, and the Service exposing the
// gateway's port alone.
func TestGatewaySidecar(t *testing.T) {
	objs := objects(t, "gateway-sidecar.yaml")
	var dep appsv1.Deployment
	decode(t, objs["Deployment/files-mcp"], &dep)
	pod := dep.Spec.Template.Spec
	hardened(t, "files-mcp", pod)
	var gw *corev1.Container
	for i, c := range pod.Containers {
		if c.Name == "gateway" {
			gw = &pod.Containers[i]
		}
		if c.Name == "mcp-server" && len(c.Ports) > 0 {
			t.Error("the MCP server declares a port: it must listen on loopback only")
		}
	}
	if gw == nil || strings.Join(gw.Command, " ") != "/usr/local/bin/mcpsts gateway --config /etc/mcpsts-gateway/gateway.yaml" {
		t.Fatalf("no gateway container: %+v", gw)
	}
	if gw.ReadinessProbe == nil || gw.ReadinessProbe.HTTPGet.Path != "/readyz" || gw.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS ||
		gw.LivenessProbe == nil || gw.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: %+v %+v", gw.ReadinessProbe, gw.LivenessProbe)
	}
	var cm corev1.ConfigMap
	decode(t, objs["ConfigMap/files-mcp-gateway"], &cm)
	var cfg struct {
		Listen, Resource, Broker, Upstream string
		ToolScopes                         string `json:"tool_scopes"`
		TLS                                map[string]string
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["gateway.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream != "http://127.0.0.1:3000/mcp" || !strings.HasPrefix(cfg.Resource, "https://") || !strings.HasPrefix(cfg.Broker, "https://") || cfg.ToolScopes == "" {
		t.Errorf("gateway.yaml: %+v", cfg)
	}
	var scopes map[string][]string
	if err := yaml.UnmarshalStrict([]byte(cm.Data["tool-scopes.yaml"]), &scopes); err != nil || len(scopes["write_file"]) == 0 {
		t.Errorf("tool-scopes.yaml: %v %v", scopes, err)
	}
	var svc corev1.Service
	decode(t, objs["Service/files-mcp"], &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "https" {
		t.Errorf("the Service exposes %+v, want the gateway's port alone", svc.Spec.Ports)
	}
}
