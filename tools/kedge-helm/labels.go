package main

import (
	"bytes"
	"fmt"
	"strings"

	"helm.sh/helm/v4/pkg/postrenderer"
	"sigs.k8s.io/yaml"
)

// labeller puts the same labels on every object of a rendered manifest.
type labeller struct {
	labels map[string]string
}

// postRenderer is nil (Helm's default) unless the request asks kedge to
// post-render or asks for labels: kedge's post-renderers first, then the
// labels, so no patch removes them.
func postRenderer(req *Request) postrenderer.PostRenderer {
	var renderers chain
	if req.PostRender {
		renderers = append(renderers, kedgeRenderer{kedge: req.kedge})
	}
	if len(req.Labels) > 0 {
		renderers = append(renderers, labeller{labels: req.Labels})
	}
	switch len(renderers) {
	case 0:
		return nil
	case 1:
		return renderers[0]
	default:
		return renderers
	}
}

func (l labeller) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	out := &bytes.Buffer{}
	for i, document := range strings.Split("\n"+rendered.String(), "\n---") {
		if strings.TrimSpace(document) == "" {
			continue
		}
		var object map[string]any
		if err := yaml.Unmarshal([]byte(document), &object); err != nil {
			return nil, fmt.Errorf("labelling rendered document %d: %w", i, err)
		}
		if object == nil {
			continue
		}
		metadata, _ := object["metadata"].(map[string]any)
		if metadata == nil {
			metadata = map[string]any{}
			object["metadata"] = metadata
		}
		labels, _ := metadata["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			metadata["labels"] = labels
		}
		for key, value := range l.labels {
			labels[key] = value
		}
		text, err := yaml.Marshal(object)
		if err != nil {
			return nil, fmt.Errorf("labelling rendered document %d: %w", i, err)
		}
		out.WriteString("---\n")
		out.Write(text)
	}
	return out, nil
}
