// Command kedge-helm runs one Helm action for kedge with Helm's own SDK, so
// charts render and releases are stored exactly as `helm` does it.
//
// Protocol: one JSON Request on stdin; on stdout, NDJSON events
// ({"type":"log",...}) and finally one {"type":"result",...}. A request with
// post_render makes the helper send each rendered manifest to kedge
// ({"type":"post_render","manifest":...}) and read kedge's answer
// ({"manifest":...} or {"error":...}) from stdin. The exit code
// is 0 when the result says ok, 1 when it carries an error, 2 when the
// request itself could not be read. SIGTERM cancels the action (Helm marks
// an interrupted install or upgrade failed).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartapi "helm.sh/helm/v4/pkg/chart"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
)

// FieldManager owns every field Helm applies on kedge's behalf.
const FieldManager = "kedge"

// Request is the one JSON object kedge writes to stdin.
type Request struct {
	// render | status | install | upgrade | test | rollback | uninstall | unlock | version
	Op               string         `json:"op"`
	Kubeconfig       string         `json:"kubeconfig,omitempty"`
	ReleaseName      string         `json:"release_name"`
	Namespace        string         `json:"namespace"`
	StorageNamespace string         `json:"storage_namespace,omitempty"`
	Chart            string         `json:"chart,omitempty"`
	Values           map[string]any `json:"values,omitempty"`
	TimeoutSeconds   int            `json:"timeout_seconds,omitempty"`
	// Wait for the release's resources with kstatus (else hooks only).
	Wait bool `json:"wait,omitempty"`
	// WaitForJobs also waits for Jobs to complete.
	WaitForJobs bool `json:"wait_for_jobs,omitempty"`
	MaxHistory  int  `json:"max_history,omitempty"`
	// CRDs: Skip | Create | CreateReplace (Flux's policies).
	CRDs            string `json:"crds,omitempty"`
	CreateNamespace bool   `json:"create_namespace,omitempty"`
	CleanupOnFail   bool   `json:"cleanup_on_fail,omitempty"`
	Force           bool   `json:"force,omitempty"`
	DisableHooks    bool   `json:"disable_hooks,omitempty"`
	// Rollback: the revision to return to; 0 is the one before the current.
	Version     int    `json:"version,omitempty"`
	KeepHistory bool   `json:"keep_history,omitempty"`
	Description string `json:"description,omitempty"`
	// Render: without the cluster (like `helm template`), and whether to
	// render as an upgrade.
	Offline   bool `json:"offline,omitempty"`
	IsUpgrade bool `json:"is_upgrade,omitempty"`
	// Labels put on every rendered object (a post-renderer), as Flux
	// labels a release's objects with its name.
	Labels map[string]string `json:"labels,omitempty"`
	// Status: also return the last release's manifest.
	WithManifest bool `json:"with_manifest,omitempty"`
	// PostRender: kedge post-renders the manifest (its own kustomize).
	PostRender bool `json:"post_render,omitempty"`
	// Debug: send Helm's debug logs too (kedge logs at debug level).
	Debug bool `json:"debug,omitempty"`

	// kedge, over stdout and stdin, for post-rendering.
	kedge *pipe
}

// Result is the last line on stdout.
type Result struct {
	Type     string          `json:"type"`
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
	Release  *ReleaseSummary `json:"release,omitempty"`
	History  []Revision      `json:"history,omitempty"`
	Manifest string          `json:"manifest,omitempty"`
	Hooks    []Hook          `json:"hooks,omitempty"`
	Version  string          `json:"version,omitempty"`
}

// ReleaseSummary is what kedge plans with: never the manifest's secrets.
type ReleaseSummary struct {
	Name         string `json:"name"`
	Namespace    string `json:"namespace"`
	Revision     int    `json:"revision"`
	Status       string `json:"status"`
	ChartName    string `json:"chart_name"`
	ChartVersion string `json:"chart_version"`
	AppVersion   string `json:"app_version,omitempty"`
	Description  string `json:"description,omitempty"`
	// sha256 of the user-supplied values as Helm stored them.
	ConfigDigest string `json:"config_digest"`
	// sha256 of the rendered manifest (hooks excluded).
	ManifestDigest string    `json:"manifest_digest"`
	FirstDeployed  time.Time `json:"first_deployed,omitzero"`
	LastDeployed   time.Time `json:"last_deployed,omitzero"`
	// The object ids of the manifest: apiVersion, kind, namespace, name.
	Objects []ObjectID `json:"objects,omitempty"`
	// Test hooks run by the last `test`, with their phase.
	Tests []TestRun `json:"tests,omitempty"`
}

type Revision struct {
	Revision     int       `json:"revision"`
	Status       string    `json:"status"`
	ChartVersion string    `json:"chart_version"`
	Description  string    `json:"description,omitempty"`
	Updated      time.Time `json:"updated,omitzero"`
}

type Hook struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Path     string   `json:"path"`
	Manifest string   `json:"manifest"`
	Events   []string `json:"events"`
}

type ObjectID struct {
	APIVersion string `json:"api_version"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

type TestRun struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
}

// out serialises every line kedge reads, from Helm's logger and from main.
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *out) write(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(v)
}

// logHandler turns Helm's slog records into NDJSON log events.
type logHandler struct {
	out   *out
	level slog.Level
	attrs []slog.Attr
}

func (h *logHandler) Enabled(_ context.Context, level slog.Level) bool { return level >= h.level }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	fields := map[string]string{}
	for _, a := range h.attrs {
		fields[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		fields[a.Key] = a.Value.String()
		return true
	})
	event := map[string]any{"type": "log", "level": strings.ToLower(r.Level.String()), "message": r.Message}
	if len(fields) > 0 {
		event["fields"] = fields
	}
	h.out.write(event)
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{out: h.out, level: h.level, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

func main() {
	stdout := &out{enc: json.NewEncoder(os.Stdout)}
	var req Request
	decoder := json.NewDecoder(io.LimitReader(os.Stdin, 1<<30))
	if err := decoder.Decode(&req); err != nil {
		stdout.write(Result{Type: "result", Error: "reading the request: " + err.Error()})
		os.Exit(2)
	}
	req.kedge = &pipe{out: stdout, in: decoder}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	level := slog.LevelInfo
	if req.Debug {
		level = slog.LevelDebug
	}
	logger := &logHandler{out: stdout, level: level}
	slog.SetDefault(slog.New(logger))
	result, err := run(ctx, &req, logger)
	if err != nil {
		result.Error = err.Error()
	}
	result.Type, result.OK = "result", err == nil
	stdout.write(result)
	if err != nil {
		os.Exit(1)
	}
}

func run(ctx context.Context, req *Request, logger slog.Handler) (Result, error) {
	if req.Op == "version" {
		return Result{Version: helmVersion()}, nil
	}
	if req.ReleaseName == "" || req.Namespace == "" {
		return Result{}, errors.New("release_name and namespace are required")
	}
	kube.ManagedFieldsManager = FieldManager
	cfg, err := configuration(req, logger)
	if err != nil {
		return Result{}, err
	}
	switch req.Op {
	case "render":
		return render(ctx, cfg, req)
	case "status":
		return status(cfg, req)
	case "install":
		return install(ctx, cfg, req)
	case "upgrade":
		return upgrade(ctx, cfg, req)
	case "test":
		return test(cfg, req)
	case "rollback":
		return rollback(cfg, req)
	case "uninstall":
		return uninstall(cfg, req)
	case "unlock":
		return unlock(cfg, req)
	default:
		return Result{}, fmt.Errorf("unknown op %q", req.Op)
	}
}

func configuration(req *Request, logger slog.Handler) (*action.Configuration, error) {
	settings := cli.New()
	if req.Kubeconfig != "" {
		settings.KubeConfig = req.Kubeconfig
	}
	storage := req.StorageNamespace
	if storage == "" {
		storage = req.Namespace
	}
	settings.SetNamespace(storage)
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(logger))
	if err := cfg.Init(settings.RESTClientGetter(), storage, "secret"); err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return cfg, nil
}

func timeout(req *Request) time.Duration {
	if req.TimeoutSeconds <= 0 {
		return 5 * time.Minute
	}
	return time.Duration(req.TimeoutSeconds) * time.Second
}

func waitStrategy(req *Request) kube.WaitStrategy {
	if req.Wait {
		return kube.StatusWatcherStrategy
	}
	return kube.HookOnlyStrategy
}

func loadChart(req *Request) (*chart.Chart, error) {
	if req.Chart == "" {
		return nil, errors.New("chart is required")
	}
	loaded, err := loader.Load(req.Chart)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", req.Chart, err)
	}
	// As helm install and helm template: a dependency missing from charts/
	// stops the action rather than rendering without it.
	accessor, err := chartapi.NewAccessor(loaded)
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", req.Chart, err)
	}
	if kind := loaded.Metadata.Type; kind != "" && kind != "application" {
		return nil, fmt.Errorf("chart %s is a %s chart: only application charts are installable", req.Chart, kind)
	}
	if dependencies := accessor.MetaDependencies(); len(dependencies) > 0 {
		if err := action.CheckDependencies(loaded, dependencies); err != nil {
			return nil, fmt.Errorf("chart %s: a dependency is missing from its charts/ directory: %w", req.Chart, err)
		}
	}
	if req.Values == nil {
		req.Values = map[string]any{}
	}
	return loaded, nil
}

func newInstall(cfg *action.Configuration, req *Request) *action.Install {
	client := action.NewInstall(cfg)
	client.ReleaseName = req.ReleaseName
	client.Namespace = req.Namespace
	client.Timeout = timeout(req)
	client.WaitStrategy = waitStrategy(req)
	client.WaitForJobs = req.WaitForJobs
	client.CreateNamespace = req.CreateNamespace
	client.DisableHooks = req.DisableHooks
	client.SkipCRDs = req.CRDs == "Skip"
	client.ServerSideApply = true
	client.ForceConflicts = true
	client.Description = req.Description
	client.PostRenderer = postRenderer(req)
	return client
}

func render(ctx context.Context, cfg *action.Configuration, req *Request) (Result, error) {
	loaded, err := loadChart(req)
	if err != nil {
		return Result{}, err
	}
	client := newInstall(cfg, req)
	client.Replace = true
	client.IncludeCRDs = req.CRDs != "Skip"
	client.IsUpgrade = req.IsUpgrade
	if req.Offline {
		client.ReleaseName = req.ReleaseName
		client.DryRunStrategy = action.DryRunClient
	} else {
		client.DryRunStrategy = action.DryRunServer
	}
	rel, err := asRelease(client.RunWithContext(ctx, loaded, req.Values))
	if err != nil {
		return Result{}, fmt.Errorf("rendering %s: %w", req.Chart, err)
	}
	result := Result{Manifest: rel.Manifest}
	for _, h := range rel.Hooks {
		events := make([]string, 0, len(h.Events))
		for _, e := range h.Events {
			events = append(events, string(e))
		}
		result.Hooks = append(result.Hooks, Hook{Name: h.Name, Kind: h.Kind, Path: h.Path, Manifest: h.Manifest, Events: events})
	}
	return result, nil
}

func install(ctx context.Context, cfg *action.Configuration, req *Request) (Result, error) {
	loaded, err := loadChart(req)
	if err != nil {
		return Result{}, err
	}
	if req.CRDs == "CreateReplace" {
		if err := applyCRDs(cfg, loaded, true); err != nil {
			return Result{}, err
		}
	}
	client := newInstall(cfg, req)
	rel, err := asRelease(client.RunWithContext(ctx, loaded, req.Values))
	return summarised(cfg, rel, err)
}

func upgrade(ctx context.Context, cfg *action.Configuration, req *Request) (Result, error) {
	loaded, err := loadChart(req)
	if err != nil {
		return Result{}, err
	}
	// Helm never touches crds/ on upgrade; Flux's Create and CreateReplace do.
	if req.CRDs == "Create" || req.CRDs == "CreateReplace" {
		if err := applyCRDs(cfg, loaded, req.CRDs == "CreateReplace"); err != nil {
			return Result{}, err
		}
	}
	client := action.NewUpgrade(cfg)
	client.Namespace = req.Namespace
	client.Timeout = timeout(req)
	client.WaitStrategy = waitStrategy(req)
	client.WaitForJobs = req.WaitForJobs
	client.DisableHooks = req.DisableHooks
	client.MaxHistory = req.MaxHistory
	client.CleanupOnFail = req.CleanupOnFail
	client.ForceReplace = req.Force
	client.ServerSideApply = "true"
	client.ForceConflicts = true
	client.SkipCRDs = true
	client.Description = req.Description
	client.PostRenderer = postRenderer(req)
	rel, err := asRelease(client.RunWithContext(ctx, req.ReleaseName, loaded, req.Values))
	return summarised(cfg, rel, err)
}

func test(cfg *action.Configuration, req *Request) (Result, error) {
	client := action.NewReleaseTesting(cfg)
	client.Namespace = req.Namespace
	client.Timeout = timeout(req)
	releaser, shutdown, err := client.Run(req.ReleaseName)
	if shutdown != nil {
		defer func() { _ = shutdown() }()
	}
	rel, convErr := toRelease(releaser)
	if convErr != nil {
		return Result{}, convErr
	}
	result, summaryErr := summarised(cfg, rel, nil)
	if result.Release != nil && rel != nil {
		for _, h := range rel.Hooks {
			for _, e := range h.Events {
				if e == release.HookTest {
					result.Release.Tests = append(result.Release.Tests, TestRun{Name: h.Name, Phase: string(h.LastRun.Phase)})
				}
			}
		}
	}
	if err != nil {
		return result, fmt.Errorf("testing release %s: %w", req.ReleaseName, err)
	}
	return result, summaryErr
}

func rollback(cfg *action.Configuration, req *Request) (Result, error) {
	client := action.NewRollback(cfg)
	client.Version = req.Version
	client.Timeout = timeout(req)
	client.WaitStrategy = waitStrategy(req)
	client.WaitForJobs = req.WaitForJobs
	client.DisableHooks = req.DisableHooks
	client.MaxHistory = req.MaxHistory
	client.CleanupOnFail = req.CleanupOnFail
	client.ForceReplace = req.Force
	client.ServerSideApply = "auto"
	client.ForceConflicts = true
	client.Description = req.Description
	if err := client.Run(req.ReleaseName); err != nil {
		return Result{}, fmt.Errorf("rolling back release %s: %w", req.ReleaseName, err)
	}
	return status(cfg, req)
}

func uninstall(cfg *action.Configuration, req *Request) (Result, error) {
	client := action.NewUninstall(cfg)
	client.Timeout = timeout(req)
	client.WaitStrategy = waitStrategy(req)
	client.DisableHooks = req.DisableHooks
	client.KeepHistory = req.KeepHistory
	client.IgnoreNotFound = true
	client.Description = req.Description
	if _, err := client.Run(req.ReleaseName); err != nil {
		return Result{}, fmt.Errorf("uninstalling release %s: %w", req.ReleaseName, err)
	}
	return Result{}, nil
}

// unlock marks a release left pending-* by an interrupted action failed,
// as Flux does, so that the next action may run.
func unlock(cfg *action.Configuration, req *Request) (Result, error) {
	last, err := lastRelease(cfg, req.ReleaseName)
	if err != nil || last == nil {
		return Result{}, err
	}
	if !last.Info.Status.IsPending() {
		return summarised(cfg, last, nil)
	}
	previous := last.Info.Status
	last.SetStatus(rcommon.StatusFailed, fmt.Sprintf("Release unlocked from stale '%s' state", previous))
	if err := cfg.Releases.Update(last); err != nil {
		return Result{}, fmt.Errorf("unlocking release %s: %w", req.ReleaseName, err)
	}
	return summarised(cfg, last, nil)
}

// status reports the last release (none: no release field) and its history.
func status(cfg *action.Configuration, req *Request) (Result, error) {
	last, err := lastRelease(cfg, req.ReleaseName)
	if err != nil || last == nil {
		return Result{}, err
	}
	result, err := summarised(cfg, last, nil)
	if err != nil {
		return result, err
	}
	if req.WithManifest {
		result.Manifest = last.Manifest
	}
	history, err := cfg.Releases.History(req.ReleaseName)
	if err != nil {
		return result, fmt.Errorf("reading the history of release %s: %w", req.ReleaseName, err)
	}
	for _, h := range history {
		rel, err := toRelease(h)
		if err != nil || rel == nil {
			continue
		}
		result.History = append(result.History, Revision{
			Revision: rel.Version, Status: rel.Info.Status.String(), ChartVersion: chartVersion(rel),
			Description: rel.Info.Description, Updated: rel.Info.LastDeployed,
		})
	}
	sort.Slice(result.History, func(i, j int) bool { return result.History[i].Revision < result.History[j].Revision })
	return result, nil
}

func lastRelease(cfg *action.Configuration, name string) (*release.Release, error) {
	last, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading release %s: %w", name, err)
	}
	return toRelease(last)
}

func asRelease(releaser ri.Releaser, err error) (*release.Release, error) {
	rel, convErr := toRelease(releaser)
	if convErr != nil {
		return nil, convErr
	}
	return rel, err
}

func toRelease(releaser ri.Releaser) (*release.Release, error) {
	switch r := releaser.(type) {
	case nil:
		return nil, nil
	case *release.Release:
		return r, nil
	case release.Release:
		return &r, nil
	default:
		return nil, fmt.Errorf("unsupported release type %T", releaser)
	}
}

// summarised reports rel even when the action failed, so kedge records the
// failed revision too.
func summarised(cfg *action.Configuration, rel *release.Release, actionErr error) (Result, error) {
	if rel == nil || rel.Info == nil {
		return Result{}, actionErr
	}
	if actionErr != nil {
		// The stored release carries the status Helm recorded for the failure.
		if stored, err := lastRelease(cfg, rel.Name); err == nil && stored != nil && stored.Version == rel.Version {
			rel = stored
		}
	}
	return Result{Release: summary(rel)}, actionErr
}

func summary(rel *release.Release) *ReleaseSummary {
	s := &ReleaseSummary{
		Name: rel.Name, Namespace: rel.Namespace, Revision: rel.Version,
		Status: rel.Info.Status.String(), Description: rel.Info.Description,
		ChartVersion: chartVersion(rel), ConfigDigest: digestJSON(rel.Config),
		ManifestDigest: digest(rel.Manifest), FirstDeployed: rel.Info.FirstDeployed, LastDeployed: rel.Info.LastDeployed,
		Objects: objectIDs(rel.Manifest),
	}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		s.ChartName, s.AppVersion = rel.Chart.Metadata.Name, rel.Chart.Metadata.AppVersion
	}
	return s
}

func chartVersion(rel *release.Release) string {
	if rel.Chart == nil || rel.Chart.Metadata == nil {
		return ""
	}
	return rel.Chart.Metadata.Version
}

func digest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// digestJSON hashes values as encoding/json writes them: map keys sorted,
// so equal values give equal digests.
func digestJSON(values map[string]any) string {
	if values == nil {
		values = map[string]any{}
	}
	encoded, err := json.Marshal(values)
	if err != nil {
		return ""
	}
	return digest(string(encoded))
}
