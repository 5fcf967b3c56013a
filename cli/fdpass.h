/* SPDX-License-Identifier: MIT */
/* cli/fdpass.h — the native baseline handle transfer is compared with: one descriptor over SCM_RIGHTS, acknowledged. */
#ifndef KOSVMM_CLI_FDPASS_H
#define KOSVMM_CLI_FDPASS_H

/* Sends fd, with one byte, over the connected socket sock (SCM_RIGHTS), then waits for the peer's
 * one-byte acknowledgement: what kosvmm_channel_send_handle and its reply cost without kosvmm.
 * 0, or -1 with errno set. */
int cli_fd_round_trip(int sock, int fd);

/* The peer's side of one round trip: receives a descriptor, closes it, acknowledges. 0, or -1
 * (errno set; EBADMSG when the message carried no descriptor). */
int cli_fd_serve_one(int sock);

#endif
