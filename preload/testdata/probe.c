/* Test helper for tests/preload.rs, compiled by the test with cc: calls the functions the
 * preload library interposes, in the ways the tests need. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "loop"))
        return cmd_loop(argv[2], atol(argv[3]), argc == 5 && !strcmp(argv[4], "compare"));
    if (argc == 3 && !strcmp(argv[1], "ioctl-loop")) return cmd_ioctl_loop(atol(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "threads")) return cmd_threads(argv[2], atoi(argv[3]), atol(argv[4]));
    if (argc == 3 && !strcmp(argv[1], "errno")) return cmd_errno(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "tapfd")) return cmd_tapfd(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "lookup")) return cmd_lookup(argv[2]);
    fprintf(stderr, "usage: probe loop|ioctl-loop|threads|errno|tapfd|lookup ...\n");
    return 2;
}
