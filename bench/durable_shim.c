/*
 * Makes DCMTK storescp durable per object, for the benchmark only: loaded with LD_PRELOAD, it syncs each
 * received object before storescp closes its file, and so before storescp answers the C-STORE. It measures
 * what durability costs a compiled receiver, beside suite-daemon, which pays the same cost.
 *
 *   SUITE_SHIM_MODE=file  fdatasync the object's file, then fsync its directory (the usual way to make
 *                         a new file durable, as a receiver with fsync on does);
 *   SUITE_SHIM_MODE=log   copy the object into a pre-zeroed file (SUITE_SHIM_LOG), at 4 KiB boundaries,
 *                         wrapping around, and fdatasync that file (what suite-daemon's ingest log does).
 *   SUITE_SHIM_COUNT      a file whose first 8 bytes hold the number of objects synced so far, so the
 *                         bench can check that every object was synced.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MODE_OFF, MODE_FILE, MODE_LOG };
#define ALIGN 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int mode = -1;
static int log_fd = -1, count_fd = -1;
static off_t log_pos = ALIGN, log_size;
static uint64_t synced;
static char *buffer;
static size_t buffer_size;
static int (*real_close)(int);
static int (*real_fclose)(FILE *);

static void init(void) {
    const char *name = getenv("SUITE_SHIM_MODE");
    mode = name && !strcmp(name, "file") ? MODE_FILE : name && !strcmp(name, "log") ? MODE_LOG : MODE_OFF;
    const char *counter = getenv("SUITE_SHIM_COUNT");
    if (counter)
        count_fd = open(counter, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (mode == MODE_LOG) {
        struct stat st;
        const char *path = getenv("SUITE_SHIM_LOG");
        log_fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;
        if (log_fd < 0 || fstat(log_fd, &st) || st.st_size < 2 * ALIGN)
            mode = MODE_OFF;
        else
            log_size = st.st_size;
    }
}

/* The path an open descriptor names, or -1. */
static int fd_path(int fd, char *path, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    if (n <= 0)
        return -1;
    path[n] = '\0';
    return 0;
}

static int sync_file(int fd) {
    char path[PATH_MAX];
    if (fdatasync(fd) || fd_path(fd, path, sizeof path))
        return -1;
    int dir = open(dirname(path), O_RDONLY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    int failed = fsync(dir);
    real_close(dir);
    return failed;
}

static int sync_into_log(int fd, size_t size) {
    char path[PATH_MAX];
    if (size > buffer_size) {
        free(buffer);
        buffer = malloc(size);
        buffer_size = buffer ? size : 0;
        if (!buffer)
            return -1;
    }
    /* storescp's descriptor is write-only: read the object back through a second one. */
    if (fd_path(fd, path, sizeof path))
        return -1;
    int reader = open(path, O_RDONLY | O_CLOEXEC);
    if (reader < 0)
        return -1;
    ssize_t got = pread(reader, buffer, size, 0);
    real_close(reader);
    if (got != (ssize_t)size)
        return -1;
    if (log_pos + (off_t)size + ALIGN > log_size)
        log_pos = ALIGN;
    if (pwrite(log_fd, buffer, size, log_pos) != (ssize_t)size || fdatasync(log_fd))
        return -1;
    log_pos += ((off_t)size + ALIGN - 1) & ~(off_t)(ALIGN - 1);
    return 0;
}

static void make_durable(int fd) {
    struct stat st;
    pthread_mutex_lock(&lock);
    if (mode < 0)
        init();
    int flags = fcntl(fd, F_GETFL);
    if (mode != MODE_OFF && flags >= 0 && (flags & O_ACCMODE) != O_RDONLY && !fstat(fd, &st) &&
        S_ISREG(st.st_mode) && st.st_size > 0) {
        int failed = mode == MODE_FILE ? sync_file(fd) : sync_into_log(fd, (size_t)st.st_size);
        if (!failed) {
            synced++;
            if (count_fd >= 0)
                pwrite(count_fd, &synced, sizeof synced, 0);
        }
    }
    pthread_mutex_unlock(&lock);
}

int fclose(FILE *stream) {
    if (!real_fclose) {
        real_fclose = dlsym(RTLD_NEXT, "fclose");
        real_close = dlsym(RTLD_NEXT, "close");
    }
    fflush(stream);
    make_durable(fileno(stream));
    return real_fclose(stream);
}

int close(int fd) {
    if (!real_close) {
        real_fclose = dlsym(RTLD_NEXT, "fclose");
        real_close = dlsym(RTLD_NEXT, "close");
    }
    make_durable(fd);
    return real_close(fd);
}
