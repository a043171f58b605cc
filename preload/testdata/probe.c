/* Test helper for tests/system/preload.rs, compiled by the test with cc: calls the functions the
 * preload library interposes, in the ways the tests need. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static unsigned sys_index(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "/sys/class/net/%s/ifindex", name);
    FILE *f = fopen(path, "r");
    unsigned i = 0;
    if (!f || fscanf(f, "%u", &i) != 1) { perror(path); exit(2); }
    fclose(f);
    return i;
}

/* The C library's own function, bypassing any preloaded interposer. */
static void *libc_fn(const char *name) {
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *f = libc ? dlsym(libc, name) : NULL;
    if (!f) { fprintf(stderr, "no %s in libc\n", name); exit(2); }
    return f;
}

/* loop NAME COUNT [compare]: if_nametoindex COUNT times. With "compare", as many calls of
 * libc's own if_nametoindex are interleaved in blocks of 1000, so that both see the same
 * machine load, and both figures are printed. */
static int cmd_loop(const char *name, long count, int compare) {
    unsigned (*direct)(const char *) = libc_fn("if_nametoindex");
    unsigned r = 0;
    double hooked = 0, plain = 0;
    for (long done = 0; done < count; done += 1000) {
        long n = count - done < 1000 ? count - done : 1000;
        double t0 = now_ns();
        for (long i = 0; i < n; i++) r = if_nametoindex(name);
        double t1 = now_ns();
        if (compare) for (long i = 0; i < n; i++) direct(name);
        double t2 = now_ns();
        hooked += t1 - t0;
        plain += t2 - t1;
    }
    printf("ns_per_call %.1f ret %u", hooked / count, r);
    if (compare) printf(" direct_ns_per_call %.1f", plain / count);
    printf("\n");
    return 0;
}

/* ioctl-loop COUNT: FIONREAD on a pipe, the pass-through path every ioctl takes, interleaved
 * with libc's own ioctl as in cmd_loop. */
static int cmd_ioctl_loop(long count) {
    int (*direct)(int, unsigned long, ...) = libc_fn("ioctl");
    int p[2], n = 0;
    if (pipe(p)) return 2;
    double hooked = 0, plain = 0;
    for (long done = 0; done < count; done += 1000) {
        double t0 = now_ns();
        for (long i = 0; i < 1000; i++) ioctl(p[0], FIONREAD, &n);
        double t1 = now_ns();
        for (long i = 0; i < 1000; i++) direct(p[0], FIONREAD, &n);
        double t2 = now_ns();
        hooked += t1 - t0;
        plain += t2 - t1;
    }
    printf("ns_per_call %.1f direct_ns_per_call %.1f\n", hooked / count, plain / count);
    return 0;
}

struct thread_arg { const char *name; long count; };
static void *thread_main(void *p) {
    struct thread_arg *a = p;
    for (long i = 0; i < a->count; i++) if_nametoindex(a->name);
    return NULL;
}

/* threads NAME N COUNT: N threads race on the same name. */
static int cmd_threads(const char *name, int n, long count) {
    pthread_t t[64];
    struct thread_arg a = {name, count};
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, thread_main, &a);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("done\n");
    return 0;
}

static int tun_open(const char *name, int *fd_out) {
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR);
    if (fd < 0) { perror("/dev/net/tun"); exit(2); }
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    errno = 4242;
    int r = ioctl(fd, TUNSETIFF, &ifr);
    *fd_out = fd;
    return r;
}

/* An rtnetlink request changing nothing on link `index`. */
static int nl_touch(int fd, unsigned index, int use_sendmsg) {
    struct { struct nlmsghdr h; struct ifinfomsg i; } req;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_NEWLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.i.ifi_family = AF_UNSPEC;
    req.i.ifi_index = index;
    errno = 4242;
    if (!use_sendmsg) return sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa);
    struct iovec iov = {&req, sizeof req};
    struct msghdr m = {.msg_name = &sa, .msg_namelen = sizeof sa, .msg_iov = &iov, .msg_iovlen = 1};
    return sendmsg(fd, &m, 0);
}

#define SHOW(label, expr) do { errno = 4242; long r_ = (long)(expr); printf("%-40s ret=%ld errno=%d\n", label, r_, errno); } while (0)

/* errno VETH: every hooked function on existing, missing and invalid names, with errno
 * preset to 4242 so that a clobbered errno shows. VETH-i0, -i1, -i2 are matching links. */
static int cmd_errno(const char *base) {
    char n0[32], n1[32], n2[32], buf[IF_NAMESIZE];
    snprintf(n0, sizeof n0, "%si0", base);
    snprintf(n1, sizeof n1, "%si1", base);
    snprintf(n2, sizeof n2, "%si2", base);
    unsigned i1 = sys_index(n1), i2 = sys_index(n2);

    SHOW("if_nametoindex(lo)", if_nametoindex("lo") != 0);
    SHOW("if_nametoindex(matching)", if_nametoindex(n0) != 0);
    SHOW("if_nametoindex(missing veth999i9)", if_nametoindex("veth999i9"));
    SHOW("if_nametoindex(empty)", if_nametoindex(""));
    SHOW("if_nametoindex(too long)", if_nametoindex("veth12345678901234"));
    SHOW("if_nametoindex(bad chars)", if_nametoindex("veth bad"));
    SHOW("if_nametoindex(dots)", if_nametoindex(".."));

    char *s;
    errno = 4242; s = if_indextoname(1, buf);
    printf("%-40s ret=%s errno=%d\n", "if_indextoname(1)", s ? s : "NULL", errno);
    errno = 4242; s = if_indextoname(i1, buf);
    printf("%-40s ret=%s errno=%d\n", "if_indextoname(matching)", s ? s : "NULL", errno);
    errno = 4242; s = if_indextoname(0x7ffffff0, buf);
    printf("%-40s ret=%s errno=%d\n", "if_indextoname(bad index)", s ? s : "NULL", errno);
    errno = 4242; s = if_indextoname(0, buf);
    printf("%-40s ret=%s errno=%d\n", "if_indextoname(0)", s ? s : "NULL", errno);

    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "tap131i0");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    int null = open("/dev/null", O_RDWR), p[2];
    if (pipe(p)) return 2;
    SHOW("ioctl(/dev/null, TUNSETIFF)", ioctl(null, TUNSETIFF, &ifr));
    SHOW("ioctl(pipe, TUNSETIFF, NULL)", ioctl(p[0], TUNSETIFF, NULL));
    SHOW("ioctl(-1, TUNSETIFF)", ioctl(-1, TUNSETIFF, &ifr));
    int tfd, r;
    r = tun_open("tap132i0", &tfd);
    printf("%-40s ret=%d errno=%d\n", "ioctl(tun, TUNSETIFF, tap132i0)", r, errno);
    close(tfd);
    r = tun_open("tap bad", &tfd);
    printf("%-40s ret=%d errno=%d\n", "ioctl(tun, TUNSETIFF, bad name)", r, errno);
    close(tfd);
    SHOW("ioctl(pipe, FIONREAD)", ioctl(p[0], FIONREAD, &r));

    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    r = nl_touch(nl, i2, 0);
    printf("%-40s ret=%d errno=%d\n", "sendto(rtnetlink, NEWLINK matching)", r, errno);
    r = nl_touch(nl, 1, 1);
    printf("%-40s ret=%d errno=%d\n", "sendmsg(rtnetlink, NEWLINK lo)", r, errno);
    r = nl_touch(-1, i2, 0);
    printf("%-40s ret=%d errno=%d\n", "sendto(-1, NEWLINK)", r, errno);
    r = nl_touch(-1, i2, 1);
    printf("%-40s ret=%d errno=%d\n", "sendmsg(-1, NEWLINK)", r, errno);
    return 0;
}

static void list_children(void) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", getpid(), getpid());
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    printf("children [%s]\n", buf);
}

/* tapfd NAME DONEFILE: holds extra descriptors (a tap among them), ignores SIGINT and blocks
 * SIGUSR1, creates tap NAME, then waits for DONEFILE (written by the stub). */
static int cmd_tapfd(const char *name, const char *done) {
    int extra = open("/dev/null", O_RDONLY);
    dup2(extra, 100);
    signal(SIGINT, SIG_IGN);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, NULL);
    int fd;
    double t0 = now_ns();
    int r = tun_open(name, &fd);
    double t1 = now_ns();
    printf("ioctl ret %d errno %d ms %.1f tunfd %d sid %d\n", r, errno, (t1 - t0) / 1e6, fd, getsid(0));
    list_children();
    for (int i = 0; i < 500 && access(done, F_OK) != 0; i++) usleep(10000);
    printf("done %s\n", access(done, F_OK) == 0 ? "yes" : "no");
    list_children();
    fflush(stdout);
    return 0;
}

/* lookup NAME: what a program that only looks a NIC up writes: a line on stdout and one on
 * stderr before and after one if_nametoindex. */
static int cmd_lookup(const char *name) {
    printf("looking up %s\n", name);
    fprintf(stderr, "probe: before the lookup\n");
    unsigned i = if_nametoindex(name);
    printf("if_nametoindex(%s) found %s\n", name, i ? "yes" : "no");
    fprintf(stderr, "probe: after the lookup\n");
    return i ? 0 : 1;
}

/* Appends attribute `type` with `len` bytes of `data` at `*at` in `buf`; returns where it starts. */
static struct rtattr *rta_put(char *buf, size_t *at, unsigned short type, const void *data, size_t len) {
    struct rtattr *a = (struct rtattr *)(buf + *at);
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), data, len);
    *at += RTA_ALIGN(a->rta_len);
    return a;
}

/* Creates veth pair NAME/PEER with one RTM_NEWLINK sent with sendto, as LXC and `ip link add`
 * do; returns 0 or -errno from the kernel's answer. */
static int nl_veth(const char *name, const char *peer) {
    char buf[512];
    size_t at = 0;
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    h->nlmsg_type = RTM_NEWLINK;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    at = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    rta_put(buf, &at, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *info = rta_put(buf, &at, IFLA_LINKINFO, NULL, 0);
    rta_put(buf, &at, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = rta_put(buf, &at, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *p = rta_put(buf, &at, VETH_INFO_PEER, NULL, 0);
    at += sizeof(struct ifinfomsg);
    rta_put(buf, &at, IFLA_IFNAME, peer, strlen(peer) + 1);
    p->rta_len = buf + at - (char *)p;
    data->rta_len = buf + at - (char *)data;
    info->rta_len = buf + at - (char *)info;
    h->nlmsg_len = at;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (fd < 0 || sendto(fd, buf, at, 0, (struct sockaddr *)&sa, sizeof sa) < 0) return -errno;
    char ack[1024];
    ssize_t n = recv(fd, ack, sizeof ack, 0);
    close(fd);
    if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EIO;
    return ((struct nlmsgerr *)NLMSG_DATA((struct nlmsghdr *)ack))->error;
}

/* What a process does with a guest NIC name N in the namespaces it is in now: create the veth
 * pair veth<N>i1/p<N>i1 over rtnetlink and look it up, create the tap tap<N>i1 and look it up by
 * index. Prints one line; exits on failure (the calls must succeed for a test to mean anything). */
static void guest_nics_here(const char *n, const char *where) {
    char veth[32], peer[32], tap[32], buf[IF_NAMESIZE];
    snprintf(veth, sizeof veth, "veth%si1", n);
    snprintf(peer, sizeof peer, "p%si1", n);
    snprintf(tap, sizeof tap, "tap%si1", n);
    int r = nl_veth(veth, peer);
    if (r) { fprintf(stderr, "%s: creating %s: %s\n", where, veth, strerror(-r)); exit(2); }
    unsigned i = if_nametoindex(veth);
    int fd;
    int t = tun_open(tap, &fd);
    unsigned ti = if_nametoindex(tap);
    char *s = ti ? if_indextoname(ti, buf) : NULL;
    if (!i || t || !s) { fprintf(stderr, "%s: lookups failed\n", where); exit(2); }
    printf("%s: created and looked up %s and %s\n", where, veth, tap);
    close(fd);
}

static void must(int ok, const char *what) {
    if (!ok) { perror(what); exit(2); }
}

/* ns MODE N [NETNS]: looks up veth<N>i0 (which exists) at home, then moves this (single)
 * thread elsewhere and handles guest NICs there (guest_nics_here), then comes back and looks up
 * veth<N>i2 (which exists). MODE: unshare-net, unshare-mnt, setns (into the network namespace
 * file NETNS), child (a forked child that unshares network and mount namespaces, as LXC's setup
 * child is cloned, and does the work while the parent waits). */
static int cmd_ns(const char *mode, const char *n, const char *netns) {
    char name[32];
    int home_net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int home_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    must(home_net >= 0 && home_mnt >= 0, "/proc/self/ns");
    snprintf(name, sizeof name, "veth%si0", n);
    printf("home: if_nametoindex(%s) %s\n", name, if_nametoindex(name) ? "found" : "missing");
    if (!strcmp(mode, "child")) {
        pid_t pid = fork();
        must(pid >= 0, "fork");
        if (pid == 0) {
            must(unshare(CLONE_NEWNET | CLONE_NEWNS) == 0, "unshare");
            must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "mount");
            guest_nics_here(n, "child");
            fflush(stdout);
            _exit(0);
        }
        int st;
        must(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
    } else {
        if (!strcmp(mode, "unshare-net")) must(unshare(CLONE_NEWNET) == 0, "unshare");
        else if (!strcmp(mode, "unshare-mnt")) must(unshare(CLONE_NEWNS) == 0, "unshare");
        else if (!strcmp(mode, "setns")) {
            int fd = open(netns, O_RDONLY | O_CLOEXEC);
            must(fd >= 0 && setns(fd, CLONE_NEWNET) == 0, netns);
            close(fd);
        } else { fprintf(stderr, "bad mode %s\n", mode); return 2; }
        guest_nics_here(n, mode);
        must(setns(home_net, CLONE_NEWNET) == 0 && setns(home_mnt, CLONE_NEWNS) == 0, "setns home");
    }
    snprintf(name, sizeof name, "veth%si2", n);
    printf("back home: if_nametoindex(%s) %s\n", name, if_nametoindex(name) ? "found" : "missing");
    return 0;
}

static volatile sig_atomic_t sigchld_count;
static void on_sigchld(int sig) { (void)sig; sigchld_count++; }

/* subreaper N SET MS: with SET=1 a child subreaper (PR_SET_CHILD_SUBREAPER), as service managers
 * and container runtimes are. Counts SIGCHLD, then looks up veth<N>i0, creates the tap
 * tap<N>i0, and for MS milliseconds polls waitpid(-1, WNOHANG), waitid(P_ALL, __WALL) and its
 * children list: none may ever show a child. */
static int cmd_subreaper(const char *n, int set, long ms) {
    char veth[32], tap[32], path[64], buf[256];
    if (set) must(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER");
    int flag = -1;
    prctl(PR_GET_CHILD_SUBREAPER, &flag, 0, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    snprintf(veth, sizeof veth, "veth%si0", n);
    snprintf(tap, sizeof tap, "tap%si0", n);
    unsigned i = if_nametoindex(veth);
    int fd;
    int t = tun_open(tap, &fd);
    must(i && !t, "lookup or tap");
    long waitpid_children = 0, waitpid_errors = 0, wall_children = 0, listed = 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
    for (long k = 0; k < ms / 10; k++) {
        int st;
        errno = 0;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0) waitpid_children++;
        else if (r < 0 && errno != ECHILD) waitpid_errors++;
        else if (r == 0) waitpid_children++; /* a live child exists */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0) wall_children++;
        FILE *f = fopen(path, "r");
        size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        if (got) listed++;
        usleep(10000);
    }
    printf("subreaper %d sigchld %d waitpid_children %ld waitpid_errors %ld wall_children %ld listed %ld\n",
           flag, (int)sigchld_count, waitpid_children, waitpid_errors, wall_children, listed);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "loop"))
        return cmd_loop(argv[2], atol(argv[3]), argc == 5 && !strcmp(argv[4], "compare"));
    if (argc == 3 && !strcmp(argv[1], "ioctl-loop")) return cmd_ioctl_loop(atol(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "threads")) return cmd_threads(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 3 && !strcmp(argv[1], "errno")) return cmd_errno(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "tapfd")) return cmd_tapfd(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "lookup")) return cmd_lookup(argv[2]);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "ns")) return cmd_ns(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
    if (argc == 5 && !strcmp(argv[1], "subreaper")) return cmd_subreaper(argv[2], atoi(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: probe loop|ioctl-loop|threads|errno|tapfd|lookup|ns|subreaper ...\n");
    return 2;
}
