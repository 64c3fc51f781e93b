// Command servicemonitor checks every ServiceMonitor in the given manifests against the
// Prometheus Operator's own Go types (github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring,
// whose module carries no CRD files): a field the type does not have, or a value of the wrong
// type, fails. Other kinds are left to crates/chart-check. Exit 1 when any object fails, 2 on
// unreadable input or when no ServiceMonitor was found.
package main

import (
	"fmt"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

const kind = "monitoring.coreos.com/v1 ServiceMonitor"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: servicemonitor MANIFEST...")
		os.Exit(2)
	}
	failed, seen := false, 0
	for _, path := range os.Args[1:] {
		text, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, doc := range splitDocuments(text) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
				os.Exit(2)
			}
			if head.APIVersion+" "+head.Kind != kind {
				continue
			}
			seen++
			var sm monitoringv1.ServiceMonitor
			if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
				failed = true
				fmt.Printf("FAIL %s: ServiceMonitor/%s: %v\n", path, head.Metadata.Name, err)
				continue
			}
			fmt.Printf("ok   %s: ServiceMonitor/%s (prometheus-operator Go types)\n", path, head.Metadata.Name)
		}
	}
	if seen == 0 {
		fmt.Fprintln(os.Stderr, "no ServiceMonitor in the manifests given")
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// splitDocuments splits a YAML stream at its "---" lines, dropping empty documents.
func splitDocuments(text []byte) [][]byte {
	var docs [][]byte
	var doc []string
	flush := func() {
		if joined := strings.Join(doc, "\n"); strings.TrimSpace(joined) != "" {
			docs = append(docs, []byte(joined))
		}
		doc = nil
	}
	for _, line := range strings.Split(string(text), "\n") {
		if line == "---" || strings.HasPrefix(line, "--- ") {
			flush()
			continue
		}
		doc = append(doc, line)
	}
	flush()
	return docs
}
