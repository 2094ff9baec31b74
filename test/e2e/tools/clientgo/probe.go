package main

// probe: the smallest proof that client-go works through a tunnel the way it
// works against a kube-apiserver. It lists ConfigMaps, starts a watch from
// the list's resourceVersion, creates a ConfigMap, and waits for its ADDED
// event. proto is resp.Proto of a raw GET /version sent through the REST
// client's own http.Client, i.e. the transport (and its ALPN choice) that the
// list and the watch used.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func init() {
	commands["probe"] = command{summary: "list, watch and create a ConfigMap; report the negotiated protocol", run: runProbe}
}

// probeResult is what probe prints.
type probeResult struct {
	// Proto is resp.Proto of the raw request, "HTTP/2.0" or "HTTP/1.1".
	Proto string `json:"proto"`
	// Listed is the number of ConfigMaps the first list returned.
	Listed int `json:"listed"`
	// Watched is true once the watch delivered ADDED for the created ConfigMap.
	Watched bool `json:"watched"`
	// Name is the ConfigMap the probe created (and deleted again).
	Name string `json:"name"`
}

func runProbe(args []string) (any, error) {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to use (required)")
	namespace := fs.String("namespace", "default", "namespace of the ConfigMaps")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *kubeconfig == "" {
		return nil, errors.New("--kubeconfig is required")
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cms := clientset.CoreV1().ConfigMaps(*namespace)

	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()

	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	name := "tower-probe-" + hex.EncodeToString(suffix)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"probe": "1"}}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	defer func() {
		// Best effort: a leftover ConfigMap only costs the next list one item.
		_ = cms.Delete(context.Background(), name, metav1.DeleteOptions{})
	}()

	watched, err := waitAdded(ctx, w, name)
	if err != nil {
		return nil, err
	}
	proto, err := rawProto(ctx, clientset.CoreV1().RESTClient())
	if err != nil {
		return nil, err
	}
	return probeResult{Proto: proto, Listed: len(list.Items), Watched: watched, Name: name}, nil
}

func waitAdded(ctx context.Context, w watch.Interface, name string) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("waiting for ADDED %s: %w", name, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, fmt.Errorf("watch closed before ADDED %s", name)
			}
			if ev.Type == watch.Error {
				return false, fmt.Errorf("watch error: %v", ev.Object)
			}
			if cm, isCM := ev.Object.(*corev1.ConfigMap); isCM && ev.Type == watch.Added && cm.Name == name {
				return true, nil
			}
		}
	}
}

// rawProto sends GET /version through the REST client's http.Client.
func rawProto(ctx context.Context, iface rest.Interface) (string, error) {
	rc, ok := iface.(*rest.RESTClient)
	if !ok || rc.Client == nil {
		return "", errors.New("REST client has no http.Client")
	}
	u := rc.Get().AbsPath("/version").URL()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := rc.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET /version: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: status %d", resp.StatusCode)
	}
	return resp.Proto, nil
}
