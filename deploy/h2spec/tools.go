//go:build tools

// Package tools names h2spec's command, so go mod tidy keeps what it needs.
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
