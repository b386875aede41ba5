package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/microgrpc/microgrpc/micro/gateway"
)

// chromium returns the path of a Chromium or Chrome, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium to drive: install it (Debian: apt-get install -y chromium); .ci/run does")
	return ""
}

// A real headless Chromium uses the dashboard as a person would, by
// keyboard: greeter's two nodes are SERVING; a call of Greeter.Hello
// through the form answers "Hello John" and names the node; the same call
// over the Connect protocol from the page's JavaScript; a node stopped
// leaves the page within seconds, without a reload; and on a phone-wide
// screen nothing is wider than the screen.
func TestDashboardInChromium(t *testing.T) {
	path := chromium(t)
	e := newEnv(t)
	startSubscriber(t, e.reg, "worker", "events")
	ids := map[string]bool{e.nodes[0].svc.ID(): true, e.nodes[1].svc.ID(): true}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1100, 760), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer func() {
		bcancel()
		_ = chromedp.Cancel(bctx)
	}()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// wait polls a JavaScript expression until it is true.
	wait := func(what, expr string, within time.Duration) {
		t.Helper()
		ok, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err != nil || !ok {
			html, _ := chromedp.Run(bctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("%s: %v\n%s", what, err, html)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
		return s
	}
	serving := `document.querySelectorAll('#nodes tbody tr[data-health="SERVING"]').length`

	run("open the dashboard", chromedp.Navigate(e.srv.URL+"/"))
	wait("greeter in the services list", `document.querySelector('#services button[data-target="greeter"]') !== null`, 10*time.Second)
	run("choose greeter by keyboard",
		chromedp.Focus(chromedp.CSS(`#services button[data-target="greeter"]`)),
		chromedp.KeyEvent("\r"))
	wait("greeter's two nodes SERVING", serving+` === 2 && document.querySelector('#services li[data-service="greeter"]').textContent.includes('2 of 2 nodes SERVING')`, 10*time.Second)
	wait("the topic events with its subscriber", `(document.querySelector('#topics li[data-topic="events"]') || {textContent: ''}).textContent.includes('1 subscriber node')`, 10*time.Second)

	call := func(protocol string) string {
		t.Helper()
		wait("Greeter.Hello in the form", `[...document.querySelectorAll('#method option')].some(o => o.value === 'greeter.Greeter/Hello')`, 10*time.Second)
		run("fill the form ("+protocol+")",
			chromedp.SetValue(chromedp.CSS("#method"), "greeter.Greeter/Hello"),
			chromedp.SetValue(chromedp.CSS("#protocol"), protocol),
			chromedp.SetValue(chromedp.CSS("#request"), `{"name":"John"}`),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('answer').textContent = ''`),
			chromedp.Focus(chromedp.CSS("#send")),
			chromedp.KeyEvent("\r"))
		wait("the answer ("+protocol+")", `document.getElementById('answer').textContent.includes('"msg": "Hello John"')`, 10*time.Second)
		answer, node := text("#answer"), text("#served-by")
		var g greeting
		if err := json.Unmarshal([]byte(answer), &g); err != nil || !ids[g.Node] || node != g.Node {
			t.Fatalf("%s: the page shows node %q and answer %s (%v); want a node of %v that answered", protocol, node, answer, err, ids)
		}
		return node
	}
	call("api")
	call("connect")

	// The Connect call above was the form's fetch of the Connect unary
	// protocol; here it is written out, as any page would.
	msg, err := chromedp.Run(bctx, chromedp.Evaluate[string](`fetch('/greeter/greeter.Greeter/Hello', {method: 'POST',
		headers: {'Content-Type': 'application/json', 'Connect-Protocol-Version': '1'}, body: JSON.stringify({name: 'John'})})
		.then(r => r.json()).then(j => j.msg)`, chromedp.EvalAwaitPromise))
	if err != nil || msg != "Hello John" {
		t.Fatalf("a Connect call from JavaScript answered %q, %v", msg, err)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "dashboard.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// A node stopped goes away without a reload.
	stopped := e.nodes[0].svc.ID()
	e.nodes[0].stop()
	wait("the stopped node gone within 5 s", serving+` === 1 && document.querySelector('#nodes tbody tr[data-node="`+stopped+`"]') === null`, 5*time.Second)
	if node := call("api"); node == stopped {
		t.Fatalf("a call after the stop was served by the stopped node %s", stopped)
	}

	// Narrow: as wide as a phone, nothing wider than the screen.
	run("a narrow screen", chromedp.EmulateViewport(360, 740))
	fits, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Fatalf("at 360 px the page is wider than the screen (%v)", err)
	}
}

// The dashboard's data for programs: the state stream and a service's
// methods with their types.
func TestDashboardData(t *testing.T) {
	e := newEnv(t)
	startSubscriber(t, e.reg, "worker", "events")
	rsp, err := http.DefaultClient.Do(mustRequest(t, http.MethodGet, e.srv.URL+"/_/events", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	if rsp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/_/events: %s %v", rsp.Status, rsp.Header)
	}
	// Events until one has greeter's two nodes SERVING and the topic's
	// subscriber.
	sc := bufio.NewScanner(rsp.Body)
	sc.Buffer(nil, 1<<20)
	for done := false; !done; {
		if !sc.Scan() {
			t.Fatalf("the event stream ended: %v", sc.Err())
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var snap gateway.Snapshot
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			t.Fatalf("an event %q: %v", data, err)
		}
		greeter, topic := 0, false
		for _, s := range snap.Services {
			for _, n := range s.Nodes {
				if s.Name == "greeter" && n.Health == "SERVING" {
					greeter++
				}
			}
		}
		for _, tp := range snap.Topics {
			topic = topic || tp.Topic == "events" && len(tp.Subscribers) == 1 && tp.Subscribers[0].Address != ""
		}
		done = greeter == 2 && topic
	}

	rsp, body := do(t, mustRequest(t, http.MethodGet, e.srv.URL+"/_/describe/greeter", ""))
	if rsp.StatusCode != 200 || !strings.Contains(body, `"call":"greeter.Greeter/Hello"`) || !strings.Contains(body, `"name":"greeter.Request","fields":[{"name":"name","type":"string"}`) {
		t.Fatalf("describe: %s %s", rsp.Status, body)
	}
	rsp, body = do(t, mustRequest(t, http.MethodGet, e.srv.URL+"/_/describe/nosuch", ""))
	if rsp.StatusCode != 404 {
		t.Fatalf("describe an unknown service: %s %s", rsp.Status, body)
	}
	rsp, body = do(t, mustRequest(t, http.MethodGet, e.srv.URL+"/", ""))
	if rsp.StatusCode != 200 || !strings.Contains(body, "<title>microgrpc gateway</title>") {
		t.Fatalf("GET /: %s", rsp.Status)
	}
}
