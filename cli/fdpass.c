/* SPDX-License-Identifier: MIT */
/* cli/fdpass.c — one descriptor over SCM_RIGHTS and its acknowledgement, for the benchmarks' and examples' native baseline. */
#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int cli_fd_round_trip(int sock, int fd)
{
    _Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &m, 0) == 1 && recv(sock, &byte, 1, 0) == 1 ? 0 : -1;
}

int cli_fd_serve_one(int sock)
{
    _Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    char byte;
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    if (!CMSG_FIRSTHDR(&m)) {
        errno = EBADMSG;
        return -1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    close(fd);
    return send(sock, &byte, 1, 0) == 1 ? 0 : -1;
}
