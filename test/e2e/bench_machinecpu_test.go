package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Each bench machine's CPU: five "machines" in network namespaces share
// this host's cores, where five real machines would each have their own.
// Uncapped, a machine alone gets every core while each of five at once
// gets a fifth of them, and "slowest / alone" measures the sharing of the
// cores (five pacmans checking packages at once) more than source choice.
// With a cap, each machine (its daemon and its pacman, children included)
// runs in a cpu cgroup with the same share in every scenario, the alone
// one included: machines as equal as real ones. The bench prints which.

const envMachineCPU = "FLOCON_BENCH_MACHINE_CPU"

// machineCPU is the cores each bench machine may use: the env knob (0 =
// no cap), else the host's cores over the 5 machines of a LAN scenario.
func machineCPU(t testing.TB) float64 {
	t.Helper()
	v := os.Getenv(envMachineCPU)
	if v == "" {
		return float64(runtime.NumCPU()) / 5
	}
	c, err := strconv.ParseFloat(v, 64)
	if err != nil || c < 0 {
		t.Fatalf("%s=%q: want cores per machine (0: no cap)", envMachineCPU, v)
	}
	return c
}

// cpuCgroupRoot is where a cpu cgroup is made: cgroup v1's cpu hierarchy,
// or v2's unified one when its cpu controller is on; "" when neither.
func cpuCgroupRoot() (dir string, v1 bool) {
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		return "/sys/fs/cgroup/cpu", true
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); err == nil && strings.Contains(" "+string(b), " cpu") {
		return "/sys/fs/cgroup", false
	}
	return "", false
}

var cgroupSeq atomic.Int64

// machineCgroup makes a cpu cgroup capped at cores and returns a command
// prefix that runs a program in it (the shell joins the group, then execs
// the program, so the pid and every child stay in it) and the group's
// directory. nil and "" when cores is 0. The group goes when the test ends
// (after the processes in it: register it before starting them).
func machineCgroup(t testing.TB, cores float64) (prefix []string, dir string) {
	t.Helper()
	if cores == 0 {
		return nil, ""
	}
	root, v1 := cpuCgroupRoot()
	if root == "" {
		t.Fatalf("%s: no writable cpu cgroup here (cgroup v1 cpu or v2 with the cpu controller); set %s=0 to run uncapped", envMachineCPU, envMachineCPU)
	}
	dir = filepath.Join(root, fmt.Sprintf("flocon-bench-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("cpu cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Logf("cpu cgroup %s: %v", dir, err)
		}
	})
	// The quota bounds what a machine takes; the weight (8x a plain
	// task's) lets it get that much while other work runs on the host.
	const period = 100_000 // µs
	quota := int(cores * period)
	var err error
	if v1 {
		err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(period)), 0o644)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.shares"), []byte("8192"), 0o644)
		}
	} else {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, period)), 0o644)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.weight"), []byte("800"), 0o644)
		}
	}
	if err != nil {
		t.Fatalf("cpu cgroup %s: quota: %v", dir, err)
	}
	acct := cpuacctDir(dir)
	if acct == "" {
		return []string{"sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, dir}, dir
	}
	// cgroup v1 counts a group's CPU in the cpuacct hierarchy: the machine
	// joins a group of the same name there too, so that every process it
	// starts counts, those its children double-fork (gpgme's gpg) included.
	if err := os.Mkdir(acct, 0o755); err != nil {
		t.Fatalf("cpuacct cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(acct) })
	return []string{"sh", "-c", `echo $$ >"$0/cgroup.procs" && echo $$ >"$1/cgroup.procs" && shift && exec "$@"`, dir, acct}, dir
}

// cpuacctDir is the cgroup v1 cpuacct group that goes with the cpu group
// dir (same name; "" when cpuacct is not a hierarchy of its own).
func cpuacctDir(dir string) string {
	const root = "/sys/fs/cgroup/cpuacct"
	if !strings.HasPrefix(dir, "/sys/fs/cgroup/cpu/") {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, "cpuacct.usage")); err != nil {
		return ""
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpuacct.usage"); err == nil {
		return "" // cpu and cpuacct are one hierarchy
	}
	return filepath.Join(root, filepath.Base(dir))
}

// machineTime is where a machine's time went so far: CPU its tasks ran,
// time they waited on a run queue for a core (the host's other work), and
// time the cgroup's quota held them (cgroup v1 cpu.stat; 0 on v2 or
// uncapped). Tasks that exit take their last interval with them (a sample
// every machineSampleEvery).
type machineTime struct {
	at                   time.Time
	run, wait, throttled time.Duration
	daemon               time.Duration // the machine's daemon's CPU time (in run)
	// all is the CPU time of every process of the machine, exited ones
	// included (cpuacct.usage; 0 where there is none)
	all time.Duration
	// hostIO is the host's time with some task stalled on I/O
	// (/proc/pressure/io "some" total; 0 without PSI): every machine's
	// disk shares the host's.
	hostIO time.Duration
}

// hostIOStall reads the host's /proc/pressure/io "some" total.
func hostIOStall() time.Duration {
	b, err := os.ReadFile("/proc/pressure/io")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	_, v, ok := strings.Cut(line, "total=")
	if !ok {
		return 0
	}
	us, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return time.Duration(us) * time.Microsecond
}

const machineSampleEvery = 50 * time.Millisecond

// machineSampler follows the tasks of one cgroup.
type machineSampler struct {
	dir  string
	pid  int                 // the daemon's
	last map[string][2]int64 // per task: run, wait (ns) at its last look
	sum  machineTime
}

// sample adds what every task of the group ran and waited since the last
// look, and reads the group's throttled time.
func (m *machineSampler) sample() machineTime {
	if m.last == nil {
		m.last = map[string][2]int64{}
	}
	b, _ := os.ReadFile(filepath.Join(m.dir, "tasks"))
	for _, tid := range strings.Fields(string(b)) {
		st, err := os.ReadFile("/proc/" + tid + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(st))
		if len(f) < 2 {
			continue
		}
		run, _ := strconv.ParseInt(f[0], 10, 64)
		wait, _ := strconv.ParseInt(f[1], 10, 64)
		old, seen := m.last[tid]
		if seen && run >= old[0] && wait >= old[1] {
			m.sum.run += time.Duration(run - old[0])
			m.sum.wait += time.Duration(wait - old[1])
		} else if !seen {
			m.sum.run += time.Duration(run)
			m.sum.wait += time.Duration(wait)
		}
		m.last[tid] = [2]int64{run, wait}
	}
	if st, err := os.ReadFile(filepath.Join(m.dir, "cpu.stat")); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "throttled_time "); ok {
				ns, _ := strconv.ParseInt(v, 10, 64)
				m.sum.throttled = time.Duration(ns)
			}
		}
	}
	m.sum.daemon = processCPU(m.pid)
	if acct := cpuacctDir(m.dir); acct != "" {
		if b, err := os.ReadFile(filepath.Join(acct, "cpuacct.usage")); err == nil {
			ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			m.sum.all = time.Duration(ns)
		}
	}
	m.sum.hostIO = hostIOStall()
	m.sum.at = time.Now()
	return m.sum
}
