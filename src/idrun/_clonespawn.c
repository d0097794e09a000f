/*
 * idrun._clonespawn: vfork-class children for idrun's two launch paths.
 *
 * spawn(): the API's child, which unshares and execs the command (apilaunch.py).
 * writer(): the CLI's map writer for direct (root) writes (launch.py).
 *
 * Why this exists: os.fork() copies the page tables of the whole Python process and
 * the exec then tears them down again; every page either side writes meanwhile is
 * copied. On the project machine that alone costs more than running util-linux's
 * unshare through subprocess (which uses vfork). A child created with CLONE_VM shares
 * the caller's memory instead, like vfork, but unlike vfork the caller keeps running,
 * which it must: it writes the child's uid_map/gid_map from the parent namespace
 * while the child waits.
 *
 * Rules for the child, which shares memory with a running Python process:
 *   - it runs only this file's code, on its own stack, and makes raw system calls
 *     (no libc calls: they could touch errno or locks in the shared TLS/heap);
 *   - all its inputs are prepared before clone() and are not touched by the caller
 *     until the child has exec'd or exited (the caller learns that from EOF on the
 *     close-on-exec report pipe, then from waitpid);
 *   - every signal is blocked across clone(); the child resets caught handlers (they
 *     belong to Python and would run on shared memory) before it restores the mask
 *     right before execve.
 *
 * Protocol with the caller (the same as the Python fork path, apilaunch.py):
 *   child: unshare(flags); own-id writes (setgroups deny, /proc/self maps);
 *          write "U"; wait for "g" on the go pipe (EOF: exit 125);
 *          stdio, cwd, setgroups, setresgid, setresuid, no_new_privs, fds, signals;
 *          execve.  Any failure: write "E" + stage + errno (int32) and exit.
 *   caller: read "U"; write and verify the maps; write "g"; read to EOF.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define IDRUN_FAST 1
#endif

#ifdef IDRUN_FAST
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)
#define MAX_WRITES 4

/* --- raw system calls: no errno, no libc state ---------------------------------- */

static inline long raw6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    ret = x0;
#endif
    return ret;
}
#define raw1(n, a) raw6((n), (long)(a), 0, 0, 0, 0, 0)
#define raw2(n, a, b) raw6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define raw3(n, a, b, c) raw6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define raw4(n, a, b, c, d) raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Kernel-side sigaction: the handler comes first on every architecture; a zeroed
 * struct is SIG_DFL with no flags and an empty mask. */
struct ksigaction { void *handler; unsigned long rest[4]; };

struct write_op { const char *path; const char *data; size_t len; };

struct spawn_args {
    long flags;
    int go_r, rep_w;
    int nfirst;                   /* the caller's ends of the pipes: closed at once, or */
    int *first;                   /* EOF on the go pipe could never reach the child */
    int nwrites;
    struct write_op writes[MAX_WRITES];
    int stdio[3];                 /* -1: leave as is */
    const char *cwd;              /* NULL: stay */
    int ngroups;                  /* -1: do not call setgroups */
    gid_t *groups;
    long gid, uid;                /* -1: do not switch */
    int nnp;
    int nkeep;                    /* ascending; fds kept open across the close sweep */
    int *keep;
    int *inherit;                 /* per keep entry: 1 = clear close-on-exec */
    const char *path;
    char **argv;
    char **envp;
    sigset_t oldmask;
    char *stack;
};

static void report(struct spawn_args *a, char stage, long err)
{
    /* byte by byte: the child calls no libc function, memcpy included */
    unsigned char msg[6];
    unsigned int e = (unsigned int)-err;
    msg[0] = 'E';
    msg[1] = (unsigned char)stage;
    msg[2] = (unsigned char)(e & 0xff);
    msg[3] = (unsigned char)((e >> 8) & 0xff);
    msg[4] = (unsigned char)((e >> 16) & 0xff);
    msg[5] = (unsigned char)((e >> 24) & 0xff);
    raw3(SYS_write, a->rep_w, msg, 6);
}

static void child_exit(int status)
{
    for (;;)
        raw1(SYS_exit, status);
}

static int fail(struct spawn_args *a, char stage, long err, int status)
{
    report(a, stage, err);
    child_exit(status);
    return 0;
}

static int child_main(void *arg)
{
    struct spawn_args *a = arg;
    long r;
    char c;
    int i, sig, fd;

    for (i = 0; i < a->nfirst; i++)
        raw1(SYS_close, a->first[i]);
    if (a->flags && (r = raw1(SYS_unshare, a->flags)) < 0)
        return fail(a, 'u', r, 125);
    for (i = 0; i < a->nwrites; i++) {
        fd = (int)raw4(SYS_openat, AT_FDCWD, a->writes[i].path, O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return fail(a, (char)('0' + i), fd, 125);
        r = raw3(SYS_write, fd, a->writes[i].data, a->writes[i].len);
        raw1(SYS_close, fd);
        if (r < 0)
            return fail(a, (char)('0' + i), r, 125);
    }
    c = 'U';
    raw3(SYS_write, a->rep_w, &c, 1);
    if (raw3(SYS_read, a->go_r, &c, 1) != 1 || c != 'g')
        child_exit(125);                 /* the caller gave up: never run the command */

    /* stdio: sources on 0-2 are moved out of the way first, as subprocess does */
    int src[3];
    for (i = 0; i < 3; i++) {
        src[i] = a->stdio[i];
        if (src[i] >= 0 && src[i] < 3 && src[i] != i) {
            r = raw3(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3);
            if (r < 0)
                return fail(a, 'd', r, 125);
            src[i] = (int)r;
        }
    }
    for (i = 0; i < 3; i++) {
        if (src[i] < 0)
            continue;
        r = src[i] == i ? raw3(SYS_fcntl, i, F_SETFD, 0) : raw3(SYS_dup3, src[i], i, 0);
        if (r < 0)
            return fail(a, 'd', r, 125);
    }
    if (a->cwd && (r = raw1(SYS_chdir, a->cwd)) < 0)
        return fail(a, 'c', r, 125);
    if (a->ngroups >= 0 && (r = raw2(SYS_setgroups, a->ngroups, a->groups)) < 0)
        return fail(a, 'g', r, 125);
    if (a->gid >= 0 && (r = raw3(SYS_setresgid, a->gid, a->gid, a->gid)) < 0)
        return fail(a, 'G', r, 125);
    if (a->uid >= 0 && (r = raw3(SYS_setresuid, a->uid, a->uid, a->uid)) < 0)
        return fail(a, 'V', r, 125);
    if (a->nnp && (r = raw6(SYS_prctl, 38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0, 0)) < 0)
        return fail(a, 'n', r, 125);

    /* descriptors: 0-2 and the kept ones survive; everything else is closed */
    unsigned int lo = 3;
    for (i = 0; i < a->nkeep; i++) {
        unsigned int k = (unsigned int)a->keep[i];
        if (k < lo)
            continue;
        if (k > lo)
            raw3(SYS_close_range, lo, k - 1, 0);
        if (a->inherit[i] && (r = raw3(SYS_fcntl, k, F_SETFD, 0)) < 0)
            return fail(a, 'f', r, 125);
        lo = k + 1;
    }
    if (raw3(SYS_close_range, lo, ~0U, 0) < 0) {
        for (fd = (int)lo; fd < 65536; fd++)      /* kernels before 5.9 */
            raw1(SYS_close, fd);
    }

    /* signals: Python's handlers must never run here; Python's SIG_IGN of SIGPIPE
     * and SIGXFSZ is reset as subprocess does */
    for (sig = 1; sig < 65; sig++) {
        static const struct ksigaction dfl;      /* all zero: SIG_DFL */
        struct ksigaction old;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (raw4(SYS_rt_sigaction, sig, NULL, &old, 8) < 0)
            continue;
        if (old.handler == (void *)SIG_DFL)
            continue;
        if (old.handler == (void *)SIG_IGN && sig != SIGPIPE && sig != SIGXFSZ)
            continue;
        raw4(SYS_rt_sigaction, sig, &dfl, NULL, 8);
    }
    raw4(SYS_rt_sigprocmask, SIG_SETMASK, &a->oldmask, NULL, 8);

    r = raw3(SYS_execve, a->path, a->argv, a->envp);
    return fail(a, 'x', r, 127);
}

/* --- the caller's side --------------------------------------------------------- */

static void free_args(struct spawn_args *a)
{
    int i;
    if (!a)
        return;
    for (i = 0; i < a->nwrites; i++) {
        free((void *)a->writes[i].path);
        free((void *)a->writes[i].data);
    }
    free((void *)a->cwd);
    free(a->groups);
    free(a->keep);
    free(a->inherit);
    free(a->first);
    free((void *)a->path);
    if (a->argv) {
        for (i = 0; a->argv[i]; i++)
            free(a->argv[i]);
        free(a->argv);
    }
    if (a->envp) {
        for (i = 0; a->envp[i]; i++)
            free(a->envp[i]);
        free(a->envp);
    }
    if (a->stack)
        munmap(a->stack, STACK_SIZE);
    free(a);
}

static void capsule_free(PyObject *cap)
{
    free_args(PyCapsule_GetPointer(cap, "idrun.spawn_args"));
}

static char *dup_bytes(PyObject *o, size_t *len)
{
    char *buf;
    Py_ssize_t n;
    char *s;
    if (PyBytes_AsStringAndSize(o, &s, &n) < 0)
        return NULL;
    buf = malloc((size_t)n + 1);
    if (!buf) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

extern char **environ;

/* A private copy of the process environment (what os.environ writes through to). */
static char **dup_environ(void)
{
    size_t i, n = 0;
    char **out;
    while (environ && environ[n])
        n++;
    out = calloc(n + 1, sizeof(char *));
    if (!out) {
        PyErr_NoMemory();
        return NULL;
    }
    for (i = 0; i < n; i++) {
        out[i] = strdup(environ[i]);
        if (!out[i]) {
            PyErr_NoMemory();
            return out;
        }
    }
    return out;
}

static char **dup_list(PyObject *seq)
{
    Py_ssize_t i, n;
    char **out;
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (!fast)
        return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    out = calloc((size_t)n + 1, sizeof(char *));
    if (!out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (i = 0; i < n; i++) {
        out[i] = dup_bytes(PySequence_Fast_GET_ITEM(fast, i), NULL);
        if (!out[i]) {
            Py_DECREF(fast);
            return out;            /* NULL-terminated so far; freed by the caller */
        }
    }
    Py_DECREF(fast);
    return out;
}

static int int_list(PyObject *seq, int **out, Py_ssize_t *count)
{
    Py_ssize_t i, n;
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (!fast)
        return -1;
    n = PySequence_Fast_GET_SIZE(fast);
    *out = calloc((size_t)n + 1, sizeof(int));
    if (!*out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        (*out)[i] = (int)v;
    }
    *count = n;
    Py_DECREF(fast);
    return 0;
}

PyDoc_STRVAR(spawn_doc,
"spawn(flags, go_r, rep_w, close_first, writes, stdio, cwd, groups, gid, uid, nnp,\n"
"      keep, inherit, path, argv, envp) -> (pid, handle)\n\n"
"``close_first``: the caller's pipe ends, closed first thing in the child.\n"
"Start the child described in the module comment. ``writes`` is a sequence of\n"
"(path, data) bytes pairs written right after unshare; ``groups`` None skips\n"
"setgroups; gid/uid -1 skip the switch; ``keep`` (ascending) and ``inherit``\n"
"(same length, bools) say which descriptors survive and which become\n"
"inheritable. ``envp`` None: a copy of this process's environment (os.environ\n"
"writes through to it). Keep ``handle`` alive until the child has exec'd or exited.");

static PyObject *py_spawn(PyObject *self, PyObject *args)
{
    long flags, gid, uid;
    int go_r, rep_w, nnp;
    PyObject *first, *writes, *stdio, *cwd, *groups, *keep, *inherit, *path, *argv, *envp;
    struct spawn_args *a;
    PyObject *cap;
    Py_ssize_t i, n, nkeep, ninherit, nfirst;
    sigset_t all;
    int pid, err;

    (void)self;
    if (!PyArg_ParseTuple(args, "liiOOOOOllpOOOOO", &flags, &go_r, &rep_w, &first, &writes,
                          &stdio, &cwd, &groups, &gid, &uid, &nnp, &keep, &inherit, &path,
                          &argv, &envp))
        return NULL;
    a = calloc(1, sizeof *a);
    if (!a)
        return PyErr_NoMemory();
    cap = PyCapsule_New(a, "idrun.spawn_args", capsule_free);
    if (!cap) {
        free_args(a);
        return NULL;
    }
    a->flags = flags;
    a->go_r = go_r;
    a->rep_w = rep_w;
    a->gid = gid;
    a->uid = uid;
    a->nnp = nnp;
    a->ngroups = -1;
    if (int_list(first, &a->first, &nfirst) < 0)
        goto error;
    a->nfirst = (int)nfirst;

    n = PySequence_Size(writes);
    if (n < 0 || n > MAX_WRITES) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "too many writes");
        goto error;
    }
    for (i = 0; i < n; i++) {
        PyObject *pair = PySequence_GetItem(writes, i);
        if (!pair)
            goto error;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "writes must be (path, data) tuples");
            goto error;
        }
        a->writes[i].path = dup_bytes(PyTuple_GET_ITEM(pair, 0), NULL);
        a->writes[i].data = a->writes[i].path ?
            dup_bytes(PyTuple_GET_ITEM(pair, 1), &a->writes[i].len) : NULL;
        a->nwrites = (int)i + 1;
        Py_DECREF(pair);
        if (!a->writes[i].data)
            goto error;
    }
    for (i = 0; i < 3; i++) {
        PyObject *o = PySequence_GetItem(stdio, i);
        if (!o)
            goto error;
        a->stdio[i] = o == Py_None ? -1 : (int)PyLong_AsLong(o);
        Py_DECREF(o);
        if (PyErr_Occurred())
            goto error;
    }
    if (cwd != Py_None && !(a->cwd = dup_bytes(cwd, NULL)))
        goto error;
    if (groups != Py_None) {
        int *tmp;
        Py_ssize_t ng;
        if (int_list(groups, &tmp, &ng) < 0)
            goto error;
        a->groups = calloc((size_t)ng + 1, sizeof(gid_t));
        if (!a->groups) {
            free(tmp);
            PyErr_NoMemory();
            goto error;
        }
        for (i = 0; i < ng; i++)
            a->groups[i] = (gid_t)tmp[i];
        free(tmp);
        a->ngroups = (int)ng;
    }
    if (int_list(keep, &a->keep, &nkeep) < 0 || int_list(inherit, &a->inherit, &ninherit) < 0)
        goto error;
    if (nkeep != ninherit) {
        PyErr_SetString(PyExc_ValueError, "keep and inherit differ in length");
        goto error;
    }
    a->nkeep = (int)nkeep;
    if (!(a->path = dup_bytes(path, NULL)) || !(a->argv = dup_list(argv)) ||
        PyErr_Occurred() || !(a->envp = envp == Py_None ? dup_environ() : dup_list(envp)) ||
        PyErr_Occurred())
        goto error;
    a->stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (a->stack == MAP_FAILED) {
        a->stack = NULL;
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &a->oldmask);
    pid = clone(child_main, a->stack + STACK_SIZE, CLONE_VM | SIGCHLD, a);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &a->oldmask, NULL);
    if (pid < 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }
    return Py_BuildValue("(iN)", pid, cap);

error:
    Py_DECREF(cap);
    return NULL;
}

/* --- the CLI's map writer ---------------------------------------------------------
 *
 * launch.py forks a writer before the launcher unshares (util-linux's pattern). For
 * direct writes (root) that writer only opens /proc/<launcher>/{setgroups,uid_map,
 * gid_map} and writes prepared bytes, which this CLONE_VM child does without the
 * cost of forking the whole interpreter. It shares the launcher's memory until it
 * exits; the launcher reaps it before changing any id (see _clone_spawner's note on
 * dumpability). Steps: close the caller's pipe ends; PR_SET_PDEATHSIG(SIGKILL);
 * getppid() must still be the launcher; pin /proc/<launcher> as a directory fd;
 * wait for "g" (EOF: exit 0); one openat + one write per file through that fd; close
 * the report pipe; exit 0. Failure: "E" + stage + errno on the report pipe, exit 1.
 */
struct writer_args {
    int nfirst;
    int *first;
    long parent;
    const char *proc_path;
    int go_r, rep_w;
    int nwrites;
    struct write_op writes[MAX_WRITES];
    char *stack;
};

static int writer_main(void *arg)
{
    struct writer_args *w = arg;
    struct spawn_args rep;            /* report() needs only rep_w */
    long r;
    int i, procfd, fd;
    char c;

    rep.rep_w = w->rep_w;
    for (i = 0; i < w->nfirst; i++)
        raw1(SYS_close, w->first[i]);
    raw6(SYS_prctl, 1 /* PR_SET_PDEATHSIG */, SIGKILL, 0, 0, 0, 0);
    if (raw1(SYS_getppid, 0) != w->parent)
        child_exit(0);                /* the launcher died before PDEATHSIG was armed */
    procfd = (int)raw4(SYS_openat, AT_FDCWD, w->proc_path,
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (procfd < 0)
        return fail(&rep, 'p', procfd, 1);
    if (raw3(SYS_read, w->go_r, &c, 1) != 1 || c != 'g')
        child_exit(0);                /* EOF: the launcher gave up */
    for (i = 0; i < w->nwrites; i++) {
        fd = (int)raw4(SYS_openat, procfd, w->writes[i].path, O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return fail(&rep, (char)('0' + i), fd, 1);
        r = raw3(SYS_write, fd, w->writes[i].data, w->writes[i].len);
        raw1(SYS_close, fd);
        if (r < 0)
            return fail(&rep, (char)('0' + i), r, 1);
        if ((size_t)r != w->writes[i].len)
            return fail(&rep, (char)('0' + i), -EIO, 1);
    }
    raw1(SYS_close, w->rep_w);
    child_exit(0);
    return 0;
}

static void free_writer(struct writer_args *w)
{
    int i;
    if (!w)
        return;
    for (i = 0; i < w->nwrites; i++) {
        free((void *)w->writes[i].path);
        free((void *)w->writes[i].data);
    }
    free(w->first);
    free((void *)w->proc_path);
    if (w->stack)
        munmap(w->stack, STACK_SIZE);
    free(w);
}

static void writer_capsule_free(PyObject *cap)
{
    free_writer(PyCapsule_GetPointer(cap, "idrun.writer_args"));
}

PyDoc_STRVAR(writer_doc,
"writer(proc_path, parent, go_r, rep_w, close_first, writes) -> (pid, handle)\n\n"
"Start the CLI's map writer described above. ``writes`` is a sequence of\n"
"(name, data) bytes pairs opened relative to ``proc_path``. Keep ``handle`` alive\n"
"until the writer has been reaped.");

static PyObject *py_writer(PyObject *self, PyObject *args)
{
    PyObject *proc_path, *first, *writes, *cap;
    long parent;
    int go_r, rep_w, pid, err;
    Py_ssize_t i, n, nfirst;
    struct writer_args *w;
    sigset_t all, old;

    (void)self;
    if (!PyArg_ParseTuple(args, "OliiOO", &proc_path, &parent, &go_r, &rep_w, &first, &writes))
        return NULL;
    w = calloc(1, sizeof *w);
    if (!w)
        return PyErr_NoMemory();
    cap = PyCapsule_New(w, "idrun.writer_args", writer_capsule_free);
    if (!cap) {
        free_writer(w);
        return NULL;
    }
    w->parent = parent;
    w->go_r = go_r;
    w->rep_w = rep_w;
    if (!(w->proc_path = dup_bytes(proc_path, NULL)) || int_list(first, &w->first, &nfirst) < 0)
        goto error;
    w->nfirst = (int)nfirst;
    n = PySequence_Size(writes);
    if (n < 0 || n > MAX_WRITES) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "too many writes");
        goto error;
    }
    for (i = 0; i < n; i++) {
        PyObject *pair = PySequence_GetItem(writes, i);
        if (!pair)
            goto error;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "writes must be (name, data) tuples");
            goto error;
        }
        w->writes[i].path = dup_bytes(PyTuple_GET_ITEM(pair, 0), NULL);
        w->writes[i].data = w->writes[i].path ?
            dup_bytes(PyTuple_GET_ITEM(pair, 1), &w->writes[i].len) : NULL;
        w->nwrites = (int)i + 1;
        Py_DECREF(pair);
        if (!w->writes[i].data)
            goto error;
    }
    w->stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (w->stack == MAP_FAILED) {
        w->stack = NULL;
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }
    /* The writer never unblocks: no handler of Python's can run in it. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(writer_main, w->stack + STACK_SIZE, CLONE_VM | SIGCHLD, w);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }
    return Py_BuildValue("(iN)", pid, cap);

error:
    Py_DECREF(cap);
    return NULL;
}

static PyMethodDef methods[] = {
    {"spawn", py_spawn, METH_VARARGS, spawn_doc},
    {"writer", py_writer, METH_VARARGS, writer_doc},
    {NULL, NULL, 0, NULL},
};
#else
static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};
#endif

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "idrun._clonespawn",
    "vfork-class spawner for idrun's API (see apilaunch.py)", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__clonespawn(void)
{
    PyObject *m = PyModule_Create(&module);
#ifdef IDRUN_FAST
    if (m && PyModule_AddIntConstant(m, "AVAILABLE", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#else
    if (m && PyModule_AddIntConstant(m, "AVAILABLE", 0) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
