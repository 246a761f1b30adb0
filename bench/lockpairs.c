// Lock+unlock pair latency against nclav's Terraform state backend, with N concurrent clients.
//
// Why a C program: on a 2-core machine the load generator competes with the server for CPU.
// wrk needs one thread per connection to keep each connection's lock/unlock strictly paired
// (50 threads on 2 cores), and a Python asyncio client tops out near 9k pairs/s by itself.
// This client is one thread with epoll: every connection owns one partition's state and
// alternates POST …/lock and DELETE …/lock (keep-alive, HTTP/1.1), exactly what terraform
// sends around an apply. Each pair is timed from writing the lock request to reading the
// unlock's answer (CLOCK_MONOTONIC). Any answer other than 200 counts as an error.
//
// Usage: lockpairs HOST PORT TOKEN [CLIENTS=50] [SECONDS=5] [WARMUP_SECONDS=1]
// Prints one line: pairs, pairs/s, p50/p90/p99/max in ms, errors.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int phase;            // 0: lock in flight, 1: unlock in flight
    double pair_started;  // seconds
    char lock_request[1024];
    char unlock_request[1024];
    int lock_length, unlock_length;
    char buffer[8192];
    int used;
} Client;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void send_all(int fd, const char *data, int length) {
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            perror("write");
            exit(1);
        }
        data += n;
        length -= n;
    }
}

// Returns the status code once a whole response (head + Content-Length body) is buffered,
// consuming it; 0 when more bytes are needed.
static int take_response(Client *c) {
    c->buffer[c->used] = 0;
    char *end = strstr(c->buffer, "\r\n\r\n");
    if (!end) return 0;
    int head = (int)(end - c->buffer) + 4;
    int body = 0;
    char *length = strcasestr(c->buffer, "\r\ncontent-length:");
    if (length && length < end) body = atoi(length + 17);
    if (c->used < head + body) return 0;
    int status = atoi(c->buffer + 9);
    memmove(c->buffer, c->buffer + head + body, c->used - head - body);
    c->used -= head + body;
    return status;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT TOKEN [CLIENTS] [SECONDS] [WARMUP_SECONDS]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *token = argv[3];
    int port = atoi(argv[2]);
    int clients = argc > 4 ? atoi(argv[4]) : 50;
    double seconds = argc > 5 ? atof(argv[5]) : 5, warmup = argc > 6 ? atof(argv[6]) : 1;
    Client *all = calloc(clients, sizeof(Client));
    size_t capacity = 1 << 22, count = 0;
    double *pairs = malloc(capacity * sizeof(double));
    long errors = 0;
    int epoll = epoll_create1(0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &address.sin_addr);

    for (int i = 0; i < clients; i++) {
        Client *c = &all[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char body[512];
        int body_length = snprintf(body, sizeof body,
            "{\"ID\":\"pairs-%d\",\"Operation\":\"OperationTypeApply\",\"Info\":\"\",\"Who\":\"lockpairs\","
            "\"Version\":\"1.11.4\",\"Created\":\"2026-01-01T00:00:00Z\",\"Path\":\"\"}", i);
        const char *format = "%s /terraform/state/bench/pairs-%d/lock HTTP/1.1\r\nHost: %s:%d\r\n"
                             "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s";
        c->lock_length = snprintf(c->lock_request, sizeof c->lock_request, format, "POST", i, host, port, token, body_length, body);
        c->unlock_length = snprintf(c->unlock_request, sizeof c->unlock_request, format, "DELETE", i, host, port, token, body_length, body);
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &event);
    }

    double start = now(), measure_from = start + warmup, stop = measure_from + seconds;
    for (int i = 0; i < clients; i++) {
        all[i].pair_started = now();
        send_all(all[i].fd, all[i].lock_request, all[i].lock_length);
    }
    struct epoll_event events[256];
    int running = clients;
    while (running > 0) {
        int ready = epoll_wait(epoll, events, 256, 1000);
        for (int e = 0; e < ready; e++) {
            Client *c = events[e].data.ptr;
            ssize_t n = read(c->fd, c->buffer + c->used, sizeof c->buffer - 1 - c->used);
            if (n <= 0) {
                fprintf(stderr, "connection closed by the server\n");
                return 1;
            }
            c->used += (int)n;
            int status;
            while ((status = take_response(c)) != 0) {
                if (status != 200) errors++;
                double t = now();
                if (c->phase == 0) {
                    c->phase = 1;
                    send_all(c->fd, c->unlock_request, c->unlock_length);
                    continue;
                }
                if (c->pair_started >= measure_from && t <= stop && count < capacity) pairs[count++] = (t - c->pair_started) * 1000;
                if (t > stop) {
                    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
                    running--;
                    break;
                }
                c->phase = 0;
                c->pair_started = t;
                send_all(c->fd, c->lock_request, c->lock_length);
            }
        }
    }
    if (count == 0) {
        fprintf(stderr, "no pairs measured\n");
        return 1;
    }
    qsort(pairs, count, sizeof(double), compare);
    printf("lock+unlock pair, %d clients on one epoll thread (C): %zu pairs in %.1f s (%.0f pairs/s): "
           "p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  errors %ld\n",
           clients, count, seconds, count / seconds, pairs[count / 2], pairs[count * 9 / 10], pairs[count * 99 / 100],
           pairs[count - 1], errors);
    return errors ? 1 : 0;
}
