package main

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/release/v1/util"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/yaml"
)

// applyCRDs server-side applies the chart's crds/ (subcharts included) and
// waits until they are established: every CRD when replace is set (Flux's
// CreateReplace), else only those the cluster does not have (Create).
func applyCRDs(cfg *action.Configuration, loaded *chart.Chart, replace bool) error {
	var applied kube.ResourceList
	for _, crd := range loaded.CRDObjects() {
		if crd.File == nil || len(crd.File.Data) == 0 {
			return fmt.Errorf("CRD file %s is empty", crd.Filename)
		}
		resources, err := cfg.KubeClient.Build(bytes.NewReader(crd.File.Data), false)
		if err != nil {
			return fmt.Errorf("reading CRD file %s: %w", crd.Filename, err)
		}
		if !replace {
			if resources, err = absent(resources); err != nil {
				return fmt.Errorf("looking up the CRDs of file %s: %w", crd.Filename, err)
			}
			if len(resources) == 0 {
				continue
			}
		}
		if _, err := cfg.KubeClient.Create(resources, kube.ClientCreateOptionServerSideApply(true, true)); err != nil {
			return fmt.Errorf("applying CRD file %s: %w", crd.Filename, err)
		}
		applied = append(applied, resources...)
	}
	if len(applied) == 0 {
		return nil
	}
	waiter, err := cfg.KubeClient.GetWaiter(kube.StatusWatcherStrategy)
	if err != nil {
		return err
	}
	if err := waiter.Wait(applied, defaultCRDWait); err != nil {
		return fmt.Errorf("waiting for the chart's CRDs to be established: %w", err)
	}
	return nil
}

const defaultCRDWait = 60 * time.Second

// absent keeps the resources the cluster does not have.
func absent(resources kube.ResourceList) (kube.ResourceList, error) {
	var missing kube.ResourceList
	for _, info := range resources {
		err := info.Get()
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, info)
		case err != nil:
			return nil, err
		}
	}
	return missing, nil
}

// objectIDs lists the objects of a rendered manifest.
func objectIDs(manifest string) []ObjectID {
	var ids []ObjectID
	for _, doc := range util.SplitManifests(manifest) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind == "" {
			continue
		}
		ids = append(ids, ObjectID{APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name})
	}
	return ids
}

// helmVersion is the Helm SDK module this helper was built with.
func helmVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "helm.sh/helm/v4" {
			return dep.Version
		}
	}
	return "unknown"
}
