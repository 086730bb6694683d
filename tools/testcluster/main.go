// Command testcluster runs a real etcd, kube-apiserver and
// kube-controller-manager in one process on 127.0.0.1, for kedge's tests,
// with one simulated node (node.go) that runs every Pod.
//
// It writes an admin kubeconfig to the path given by --kubeconfig and prints
// exactly one line, "testcluster ready kubeconfig=<path> server=<url>", on
// stdout once /readyz answers ok and the default ServiceAccount exists. It
// stops on SIGINT/SIGTERM, or when stdin closes if --exit-on-stdin-close is
// set, so a test binary that dies does not leave it running.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

const controllers = "namespace-controller,garbage-collector-controller," +
	"serviceaccount-controller,serviceaccount-token-controller," +
	"deployment-controller,replicaset-controller,statefulset-controller," +
	"daemonset-controller,job-controller"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig (required)")
	dataDir := flag.String("data-dir", "", "working directory for etcd, certs and keys (default: a new temp dir, removed on exit)")
	port := flag.Int("port", 0, "kube-apiserver secure port (default: a free port)")
	exitOnStdinClose := flag.Bool("exit-on-stdin-close", false, "stop when stdin reaches EOF")
	cleanupDir := flag.String("cleanup-dir", "", "a directory to remove after a clean stop (e.g. the caller's, holding the kubeconfig and log)")
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "testcluster: --kubeconfig is required")
		os.Exit(2)
	}
	if err := run(*kubeconfig, *dataDir, *port, *exitOnStdinClose); err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		os.Exit(1)
	}
	// Only after a clean stop: when the start fails, the caller needs the log.
	if *cleanupDir != "" {
		os.RemoveAll(*cleanupDir)
	}
}

func run(kubeconfigPath, dataDir string, port int, exitOnStdinClose bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if exitOnStdinClose {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}

	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "kedge-testcluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	start := time.Now()

	etcd, etcdURL, err := startEtcd(filepath.Join(dataDir, "etcd"))
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	files, err := writeCredentials(dataDir, token)
	if err != nil {
		return err
	}

	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	if err := startAPIServer(apiCtx, apiDone, etcdURL, port, files); err != nil {
		stopAPI()
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := waitReady(ctx, apiDone, server, token); err != nil {
		stopAPI()
		return err
	}
	if err := writeKubeconfig(kubeconfigPath, server, token, filepath.Join(files.certDir, "apiserver.crt")); err != nil {
		stopAPI()
		return err
	}

	kcmDone := make(chan error, 1)
	if err := startControllerManager(apiCtx, kcmDone, kubeconfigPath, files.saKey); err != nil {
		stopAPI()
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if err := waitDefaultServiceAccount(ctx, server, token); err != nil {
		stopAPI()
		return err
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- runNode(apiCtx, kubeconfigPath) }()
	fmt.Printf("testcluster ready kubeconfig=%s server=%s startup=%.1fs\n", kubeconfigPath, server, time.Since(start).Seconds())

	select {
	case <-ctx.Done():
	case err := <-apiDone:
		stopAPI()
		return fmt.Errorf("kube-apiserver stopped: %v", err)
	case err := <-kcmDone:
		stopAPI()
		return fmt.Errorf("kube-controller-manager stopped: %v", err)
	case err := <-nodeDone:
		stopAPI()
		return fmt.Errorf("simulated node stopped: %v", err)
	}
	stopAPI()
	select {
	case <-apiDone:
	case <-time.After(10 * time.Second):
	}
	return nil
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("not ready after 60s")
	}
	return e, clientURL.String(), nil
}

type credentialFiles struct {
	certDir, saKey, saPub, tokens string
}

func writeCredentials(dataDir, token string) (credentialFiles, error) {
	f := credentialFiles{
		certDir: filepath.Join(dataDir, "certs"),
		saKey:   filepath.Join(dataDir, "sa.key"),
		saPub:   filepath.Join(dataDir, "sa.pub"),
		tokens:  filepath.Join(dataDir, "tokens.csv"),
	}
	if err := os.MkdirAll(f.certDir, 0o700); err != nil {
		return f, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return f, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return f, err
	}
	writes := []struct {
		path string
		data []byte
	}{
		{f.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})},
		{f.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})},
		{f.tokens, []byte(token + ",admin,admin,system:masters\n")},
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

func startAPIServer(ctx context.Context, done chan<- error, etcdURL string, port int, f credentialFiles) error {
	s := apiserveroptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, set := range s.Flags().FlagSets {
		fs.AddFlagSet(set)
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + f.certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + f.saPub,
		"--service-account-signing-key-file=" + f.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--token-auth-file=" + f.tokens,
		"--endpoint-reconciler-type=none",
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	registry := s.GenericServerRunOptions.ComponentGlobalsRegistry
	if err := registry.Set(); err != nil {
		return err
	}
	gate := registry.FeatureGateFor(compatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(s.Logs, gate); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	go func() { done <- apiserver.Run(ctx, completed) }()
	return nil
}

func startControllerManager(ctx context.Context, done chan<- error, kubeconfig, saKey string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases()
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, set := range s.Flags(known, disabled, aliases).FlagSets {
		fs.AddFlagSet(set)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file=" + saKey,
		"--controllers=" + controllers,
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := s.Config(known, disabled, aliases)
	if err != nil {
		return err
	}
	go func() { done <- kcm.Run(ctx, c.Complete()) }()
	return nil
}

func waitReady(ctx context.Context, apiDone <-chan error, server, token string) error {
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if body, err := get(ctx, server+"/readyz", token); err == nil && body == "ok" {
			return nil
		}
		select {
		case err := <-apiDone:
			return fmt.Errorf("kube-apiserver exited before ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("kube-apiserver /readyz not ok after 120s")
}

// waitDefaultServiceAccount waits for the serviceaccount controller, so that a
// test creating Pods or Deployments right away does not race it.
func waitDefaultServiceAccount(ctx context.Context, server, token string) error {
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := get(ctx, server+"/api/v1/namespaces/default/serviceaccounts/default", token); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("default ServiceAccount not created after 120s")
}

var insecureClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
}

func get(ctx context.Context, target, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := insecureClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

func writeKubeconfig(path, server, token, caFile string) error {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: testcluster
  context:
    cluster: testcluster
    user: admin
current-context: testcluster
`, server, base64.StdEncoding.EncodeToString(ca), token)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
