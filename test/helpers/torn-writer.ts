// A client process that leaves a WRITE half sent (integration 44 and 88): it connects, sends the
// request header and the first `sentBytes` of its payload (0xab), says so, and waits to be
// SIGKILLed, so the server sees the connection die mid-payload.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

/**
 * A client process that connects, sends a WRITE header and `sentBytes` of its payload (0xab),
 * prints "sent" and waits to be killed.
 */
export function tornWriter(port: number, exportName: string, offset: number, length: number, sentBytes: number): { kill: () => Promise<void>; sent: Promise<void> } {
  const helper = path.join(__dirname, 'nbd-client.js');
  const protocol = path.join(__dirname, '..', '..', 'src', 'nbd', 'protocol.js');
  const source = `
    const { NbdTestClient } = require(${JSON.stringify(helper)});
    const P = require(${JSON.stringify(protocol)});
    (async () => {
      const client = await NbdTestClient.open({ host: '127.0.0.1', port: ${port} }, { exportName: ${JSON.stringify(exportName)} });
      const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 7n, ${offset}, ${length}, Buffer.alloc(${length}, 0xab));
      client.send(bytes.subarray(0, 28 + ${sentBytes}));
      process.stdout.write('sent\\n');
      setInterval(() => undefined, 1000);
    })().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  const sent = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('sent')) resolve(); });
    child.once('exit', (code) => reject(new Error(`writer exited ${code} before sending`)));
  });
  const kill = async (): Promise<void> => {
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  };
  return { kill, sent };
}

