// The receiving side of the link benchmark (link.bench.ts), in a process of its own so that the
// sender and the receiver each have their own event loop (and, on a 2-core machine, a core).
// One process holds both receivers, so the link and its raw TCP baseline are received by the
// same process, on the same CPU, with the same heap and JIT state:
//
//   link   a Controller "receiver" with a replication listener on 127.0.0.1:0 and one peer,
//          "sender" (no address: it only accepts). It counts LINK_TEST messages (count and
//          payload bytes) and answers LINK_TEST_REQUEST by echoing the payload.
//   raw    the same shape without the link: a net.Server that reads every byte as a user of
//          a socket would ('data' events) and counts them (the stream baseline), and a second
//          one that echoes length-prefixed messages (u32 big-endian length, then the payload)
//          for the ping-pong baseline. Nagle is off, as in tcp.ts.
//
// Ready message: {ready: true, ports: [link, raw stream, raw echo]}.
// The parent talks to it over IPC, one request and one reply per command:
//   {id, cmd: 'reset'}                      zero the counters and the CPU clock
//   {id, cmd: 'expect', messages, bytes}    reply once that many messages/bytes have arrived
//   {id, cmd: 'exit'}                       close and exit
// Replies carry {id, messages, bytes, cpuUserUs, cpuSystemUs, minorPageFaults, contextSwitches}
// (since the last reset). One measurement runs at a time, so the counters are shared.
import * as net from 'node:net';

import { Controller } from '../src/controller/controller';
import { MessageType } from '../src/transport/message-types';

interface Command {
  id: number;
  cmd: 'reset' | 'expect' | 'exit';
  messages?: number;
  bytes?: number;
}

let messages = 0;
let bytes = 0;
let cpuAtReset = process.cpuUsage();
let faultsAtReset = process.resourceUsage().minorPageFault;
let switchesAtReset = contextSwitches();

function contextSwitches(): number {
  const usage = process.resourceUsage();
  return usage.voluntaryContextSwitches + usage.involuntaryContextSwitches;
}
let waiting: { id: number; messages: number; bytes: number } | undefined;

function reply(id: number): void {
  const cpu = process.cpuUsage(cpuAtReset);
  const minorPageFaults = process.resourceUsage().minorPageFault - faultsAtReset;
  const switches = contextSwitches() - switchesAtReset;
  process.send?.({ id, messages, bytes, cpuUserUs: cpu.user, cpuSystemUs: cpu.system, minorPageFaults, contextSwitches: switches });
}

function check(): void {
  if (waiting !== undefined && messages >= waiting.messages && bytes >= waiting.bytes) {
    const { id } = waiting;
    waiting = undefined;
    reply(id);
  }
}

async function startLink(): Promise<{ ports: number[]; close(): Promise<void> }> {
  const controller = new Controller({
    id: 'receiver',
    replication: { listen: { host: '127.0.0.1', port: 0 } },
    peers: [{ id: 'sender' }],
  });
  await controller.start();
  const link = controller.link('sender');
  link.on('message', (message: { type: number; payload: Buffer }) => {
    if (message.type !== MessageType.LINK_TEST) return;
    messages++;
    bytes += message.payload.length;
    if (waiting !== undefined) check();
  });
  link.handle(MessageType.LINK_TEST_REQUEST, (payload) => payload);
  const address = controller.replicationAddress;
  if (address === undefined) throw new Error('the receiver controller has no listener address');
  return { ports: [address.port], close: () => controller.close() };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

async function startRaw(): Promise<{ ports: number[]; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  const counter = net.createServer((socket) => {
    track(socket);
    socket.on('data', (chunk: Buffer) => {
      messages++; // chunks, for information only; completion is by bytes
      bytes += chunk.length;
      if (waiting !== undefined) check();
    });
  });
  const echo = net.createServer((socket) => {
    track(socket);
    let held: Buffer | undefined;
    socket.on('data', (chunk: Buffer) => {
      let data = held === undefined ? chunk : Buffer.concat([held, chunk]);
      held = undefined;
      while (data.length >= 4) {
        const total = 4 + data.readUInt32BE(0);
        if (data.length < total) break;
        socket.write(data.length === total ? data : data.subarray(0, total));
        data = data.subarray(total);
      }
      if (data.length > 0) held = Buffer.from(data);
    });
  });
  const ports = [await listen(counter), await listen(echo)];
  return {
    ports,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([counter, echo].map((server) => new Promise<void>((done) => server.close(() => done()))));
    },
  };
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('link-peer.js must be forked with an IPC channel');
  const link = await startLink();
  const raw = await startRaw();
  const peer = { ports: [...link.ports, ...raw.ports], close: () => Promise.all([link.close(), raw.close()]) };
  process.on('disconnect', () => process.exit(0));
  process.on('message', (command: Command) => {
    switch (command.cmd) {
      case 'reset':
        messages = 0;
        bytes = 0;
        waiting = undefined;
        cpuAtReset = process.cpuUsage();
        faultsAtReset = process.resourceUsage().minorPageFault;
        switchesAtReset = contextSwitches();
        reply(command.id);
        return;
      case 'expect':
        waiting = { id: command.id, messages: command.messages ?? 0, bytes: command.bytes ?? 0 };
        check();
        return;
      case 'exit':
        void peer.close().finally(() => {
          reply(command.id);
          process.disconnect();
        });
        return;
    }
  });
  process.send({ ready: true, ports: peer.ports });
}

main().catch((error: unknown) => {
  process.stderr.write(`link-peer: ${String((error as Error).stack ?? error)}\n`);
  process.exit(1);
});
