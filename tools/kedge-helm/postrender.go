package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"helm.sh/helm/v4/pkg/postrenderer"
)

// pipe is kedge at the other end of stdout and stdin.
type pipe struct {
	out *out
	in  *json.Decoder
}

// postRendered is kedge's answer to a post_render line.
type postRendered struct {
	Manifest string `json:"manifest"`
	Error    string `json:"error,omitempty"`
}

// kedgeRenderer hands the rendered manifest to kedge, whose post-renderers
// (its own kustomize: patches, images) return the manifest Helm applies.
type kedgeRenderer struct {
	kedge *pipe
}

func (k kedgeRenderer) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	if k.kedge == nil {
		return nil, errors.New("post_render was asked for, but kedge is not connected")
	}
	k.kedge.out.write(map[string]any{"type": "post_render", "manifest": rendered.String()})
	var answer postRendered
	if err := k.kedge.in.Decode(&answer); err != nil {
		return nil, fmt.Errorf("reading kedge's post-rendered manifest: %w", err)
	}
	if answer.Error != "" {
		return nil, fmt.Errorf("kedge's post-renderers: %s", answer.Error)
	}
	return bytes.NewBufferString(answer.Manifest), nil
}

// chain runs post-renderers in order, each on the output of the one before.
type chain []postrenderer.PostRenderer

func (c chain) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	for _, renderer := range c {
		var err error
		if rendered, err = renderer.Run(rendered); err != nil {
			return nil, err
		}
	}
	return rendered, nil
}
