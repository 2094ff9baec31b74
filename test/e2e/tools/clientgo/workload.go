// The bench's client-go workload (`clientgo workload ...`): what a federation controller does to a
// member cluster, timed. bench/sections/clientgo.ts runs it against one kube-apiserver directly,
// through Tower's passthrough port and through proxy mode, and divides.
//
//	--phase setup  creates the namespace and --configmaps ConfigMaps (idempotent: counts what exists),
//	               and the namespace <namespace>-ssa for the applies (so lists return exactly --configmaps)
//	--phase run    1. GET /version on the client's own transport: the negotiated protocol (resp.Proto)
//	               2. shared informers on 10 types, started at once: time until every cache synced
//	               3. a list storm: --lists full lists of the ConfigMaps, --list-concurrency at a time
//	               4. a server-side-apply storm: --applies ConfigMaps applied, --apply-concurrency at a time
//	               5. with --watches N: prints {"event":"ready-for-watches"}, waits for a line on stdin
//	                  (the bench reads RSS meanwhile), opens N more watches, prints {"event":"holding"}
//	                  and holds them until stdin closes
//	               then returns the figures (milliseconds), which main prints as one JSON line.
//
// The two event lines of --watches are printed by workload itself, before main's result line.
//
// Client-side rate limiting is off (QPS/Burst high): client-go's default of 5 QPS would time the
// limiter, not the path.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// workloadResult is the JSON line `--phase run` prints. Times in milliseconds.
type workloadResult struct {
	Proto           string    `json:"proto"`
	Types           int       `json:"types"`
	SyncMs          float64   `json:"syncMs"`
	Lists           int       `json:"lists"`
	ListItems       int       `json:"listItems"`
	ListMs          []float64 `json:"listMs"`
	ListMedianMs    float64   `json:"listMedianMs"`
	ListStormMs     float64   `json:"listStormMs"`
	Applies         int       `json:"applies"`
	ApplyStormMs    float64   `json:"applyStormMs"`
	ApplyP50Ms      float64   `json:"applyP50Ms"`
	ApplyP99Ms      float64   `json:"applyP99Ms"`
	Watches         int       `json:"watches"`
	WatchOpenMs     float64   `json:"watchOpenMs"`
	InformerWatches int       `json:"informerWatches"`
	TotalMs         float64   `json:"totalMs"`
	SetupCreated    int       `json:"setupCreated,omitempty"`
	SetupExisting   int       `json:"setupExisting,omitempty"`
	SetupMs         float64   `json:"setupMs,omitempty"`
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func percentileMs(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// parallel runs f(0..n-1) on `workers` goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func init() {
	commands["workload"] = command{summary: "the bench's timed workload: informers on 10 types, list and apply storms, idle watches", run: runWorkload}
}

func runWorkload(args []string) (any, error) {
	fs := flag.NewFlagSet("workload", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the path under test")
	phase := fs.String("phase", "run", "setup | run")
	ns := fs.String("namespace", "tower-bench", "namespace of the workload's objects")
	configmaps := fs.Int("configmaps", 5000, "ConfigMaps the setup creates and every list returns")
	dataBytes := fs.Int("data-bytes", 256, "bytes of data per setup ConfigMap")
	lists := fs.Int("lists", 10, "full lists of the ConfigMaps in the list storm")
	listConc := fs.Int("list-concurrency", 2, "lists in flight at once")
	applies := fs.Int("applies", 500, "server-side applies in the apply storm")
	applyConc := fs.Int("apply-concurrency", 16, "applies in flight at once")
	watches := fs.Int("watches", 0, "extra idle watches to hold after the storms (0: none)")
	runID := fs.String("run-id", strconv.FormatInt(time.Now().UnixNano(), 36), "value the applies write, so each run changes the objects")
	http1 := fs.Bool("http1", false, "offer only http/1.1 in ALPN (client-go's behaviour with HTTP/2 disabled)")
	timeout := fs.Duration("timeout", 10*time.Minute, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *kubeconfig == "" {
		return nil, errors.New("workload: --kubeconfig is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("workload: kubeconfig: %w", err)
	}
	cfg.QPS = 100000
	cfg.Burst = 100000
	cfg.UserAgent = "tower-bench-clientgo"
	if *http1 {
		cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch *phase {
	case "setup":
		return setup(ctx, cs, *ns, *configmaps, *dataBytes)
	case "run":
	default:
		return nil, fmt.Errorf("workload: unknown --phase %q", *phase)
	}

	out := workloadResult{}
	t0 := time.Now()
	if out.Proto, err = negotiatedProto(ctx, cfg); err != nil {
		return nil, err
	}

	// 2. Informers on 10 types, as a controller starts them: one factory, started at once.
	factory := informers.NewSharedInformerFactory(cs, 0)
	synced := []cache.InformerSynced{
		factory.Core().V1().ConfigMaps().Informer().HasSynced,
		factory.Core().V1().Secrets().Informer().HasSynced,
		factory.Core().V1().Services().Informer().HasSynced,
		factory.Core().V1().ServiceAccounts().Informer().HasSynced,
		factory.Core().V1().Namespaces().Informer().HasSynced,
		factory.Core().V1().Pods().Informer().HasSynced,
		factory.Apps().V1().Deployments().Informer().HasSynced,
		factory.Apps().V1().StatefulSets().Informer().HasSynced,
		factory.Rbac().V1().Roles().Informer().HasSynced,
		factory.Coordination().V1().Leases().Informer().HasSynced,
	}
	out.Types = len(synced)
	out.InformerWatches = len(synced)
	stop := make(chan struct{})
	defer close(stop)
	ts := time.Now()
	factory.Start(stop)
	// cache.WaitForCacheSync polls every 100 ms, which rounds a sync of about 100 ms to 100 or 200 ms
	// (a ratio of 1.0 or 2.0 to direct by chance): poll every millisecond instead, on one ticker.
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for !allSynced(synced) {
		select {
		case <-ctx.Done():
			return nil, errors.New("workload: informer caches did not sync before the deadline")
		case <-poll.C:
		}
	}
	out.SyncMs = msSince(ts)

	// 3. The list storm.
	out.Lists = *lists
	out.ListMs = make([]float64, *lists)
	tl := time.Now()
	var items atomic.Int64
	err = parallel(*lists, *listConc, func(i int) error {
		t := time.Now()
		l, err := cs.CoreV1().ConfigMaps(*ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("workload: list %d: %w", i, err)
		}
		out.ListMs[i] = msSince(t)
		items.Store(int64(len(l.Items)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.ListStormMs = msSince(tl)
	out.ListItems = int(items.Load())
	out.ListMedianMs = percentileMs(out.ListMs, 50)

	// 4. The server-side-apply storm.
	out.Applies = *applies
	applyMs := make([]float64, *applies)
	ta := time.Now()
	err = parallel(*applies, *applyConc, func(i int) error {
		cm := applycorev1.ConfigMap(fmt.Sprintf("ssa-%d", i), *ns+"-ssa").
			WithLabels(map[string]string{"tower-bench": "ssa"}).
			WithData(map[string]string{"run": *runID, "index": strconv.Itoa(i)})
		t := time.Now()
		if _, err := cs.CoreV1().ConfigMaps(*ns+"-ssa").Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "tower-bench", Force: true}); err != nil {
			return fmt.Errorf("workload: apply %d: %w", i, err)
		}
		applyMs[i] = msSince(t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.ApplyStormMs = msSince(ta)
	out.ApplyP50Ms = percentileMs(applyMs, 50)
	out.ApplyP99Ms = percentileMs(applyMs, 99)

	// 5. Idle watches, for memory per watch on the path's processes.
	if *watches > 0 {
		in := bufio.NewReader(os.Stdin)
		emit(map[string]any{"event": "ready-for-watches"})
		if _, err := in.ReadString('\n'); err != nil {
			return nil, fmt.Errorf("workload: stdin closed before the watches: %w", err)
		}
		tw := time.Now()
		held := make([]interface{ Stop() }, *watches)
		err = parallel(*watches, 50, func(i int) error {
			w, err := cs.CoreV1().ConfigMaps(*ns).Watch(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("tower-bench-watch=w%d", i)})
			if err != nil {
				return fmt.Errorf("workload: watch %d: %w", i, err)
			}
			held[i] = w
			return nil
		})
		if err != nil {
			return nil, err
		}
		out.Watches = *watches
		out.WatchOpenMs = msSince(tw)
		emit(map[string]any{"event": "holding", "watches": *watches})
		_, _ = io.Copy(io.Discard, in)
		for _, w := range held {
			w.Stop()
		}
	}
	out.TotalMs = msSince(t0)
	return out, nil
}

// negotiatedProto asks GET /version on a transport built from the same rest config as the clientset
// (client-go caches transports by TLS config, so it is the same connection pool) and returns resp.Proto.
func negotiatedProto(ctx context.Context, cfg *rest.Config) (string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("workload: GET /version: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("workload: GET /version: %s", resp.Status)
	}
	return resp.Proto, nil
}

func setup(ctx context.Context, cs kubernetes.Interface, ns string, n, dataBytes int) (any, error) {
	t0 := time.Now()
	for _, name := range []string{ns, ns + "-ssa"} {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("workload: create namespace %s: %w", name, err)
		}
	}
	pad := make([]byte, dataBytes)
	for i := range pad {
		pad[i] = 'x'
	}
	var created, existing atomic.Int64
	err := parallel(n, 32, func(i int) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: ns, Labels: map[string]string{"tower-bench": "list"}},
			Data:       map[string]string{"index": strconv.Itoa(i), "pad": string(pad)},
		}
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		switch {
		case err == nil:
			created.Add(1)
		case apierrors.IsAlreadyExists(err):
			existing.Add(1)
		default:
			return fmt.Errorf("workload: create cm-%d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return workloadResult{SetupCreated: int(created.Load()), SetupExisting: int(existing.Load()), SetupMs: msSince(t0)}, nil
}

// allSynced reports whether every informer has synced.
func allSynced(synced []cache.InformerSynced) bool {
	for _, f := range synced {
		if !f() {
			return false
		}
	}
	return true
}
