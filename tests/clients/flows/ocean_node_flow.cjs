// The free compute flow through ocean.js 8.x's own `ProviderInstance`, against the
// server's Ocean Node dialect (served under /node).
//
// Run by the clients' tests with the machine's node, loading the library from the
// node_modules folder that the test built for one ocean.js version. The wallet has no
// provider: nothing here needs a chain, only signatures. It calls the client's API as
// a user would (the VS Code extension's free compute), writes what each call answered
// to the report file (JSON), with the time (Date.now(), ms) at which things were seen,
// and lets any error surface with the client's own stack; where a refusal is the
// expected outcome it is recorded instead. The test asserts on the report.
//
//   node ocean_node_flow.cjs REPORT MODULES_DIR NODE_URI KEY IMAGE:TAG DATASET_URL full|short|queue
//
// full (8.6.2): environments, nonce, a job whose logs are streamed while it runs, its
//   results whole and from an offset, a long job stopped while it runs, then an auth
//   token: a job started, watched and downloaded with it, the token invalidated and
//   refused.
// short (8.0.0): environments, nonce, a job, its results whole and from an offset.
// queue (8.6.2): while long jobs hold every slot of the free environment, a job started
//   with freeComputeStart's queueMaxWaitTime waits, then expires in the queue; the
//   long jobs are stopped.
'use strict'

const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')

const [report, modules, nodeUri, key, imageRef, datasetUrl, mode] = process.argv.slice(2)
const modulesDir = path.resolve(modules)
const load = createRequire(path.join(modulesDir, 'package.json'))
const { ProviderInstance } = load('@oceanprotocol/lib')
const { ethers } = load('ethers')

const POLL_MS = 300
const DEADLINE_MS = 120000
const RUNNING = 'Running algorithm'
// Writes its results first, then prints a line a second: a log to stream while it runs.
const MAIN_ALGORITHM =
  'echo "ocean node was here" > "$OUTPUTS/result.txt"; ' +
  'for f in /data/inputs/*/0; do cat "$f"; done > "$OUTPUTS/copy.txt"; ' +
  'for i in 1 2 3 4 5; do echo "line $i"; sleep 1; done'
const LONG_ALGORITHM = 'for i in $(seq 1 60); do echo "tick $i"; sleep 1; done'
const TOKEN_ALGORITHM =
  'echo "token job"; echo "ocean node was here" > "$OUTPUTS/result.txt"'
const [image, tag] = imageRef.split(':')
const datasets = [{ fileObject: { type: 'url', url: datasetUrl, method: 'GET' } }]
const out = { mode }

function algorithm (rawcode) {
  return {
    meta: { rawcode, container: { entrypoint: 'sh $ALGO', image, tag: tag || 'latest' } }
  }
}

function first (answer) {
  return Array.isArray(answer) ? answer[0] : answer
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function jwtPayload (token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
  } catch (error) {
    return { undecodable: String(error.message || error) }
  }
}

async function read (iterable) {
  const chunks = []
  for await (const chunk of iterable) chunks.push(Buffer.from(chunk))
  return Buffer.concat(chunks)
}

// Status every POLL_MS until `until(job)`; every distinct (status, statusText) seen goes
// to `seen` with the time it was first seen. A job that finishes first fails the wait.
async function poll (consumer, jobId, until, what, seen) {
  const deadline = Date.now() + DEADLINE_MS
  let job
  while (Date.now() < deadline) {
    job = first(await ProviderInstance.computeStatus(nodeUri, consumer, jobId))
    const at = Date.now()
    if (job) {
      const last = seen[seen.length - 1]
      if (!last || last.status !== job.status || last.statusText !== job.statusText) {
        seen.push({ status: job.status, statusText: job.statusText, at })
      }
      if (until(job)) return { job, at }
      if (job.dateFinished) break
    }
    await sleep(POLL_MS)
  }
  throw new Error(`job ${jobId} never got ${what}; last seen: ${JSON.stringify(job)}`)
}

const isRunning = (job) => String(job.statusText || '').includes(RUNNING)
const isFinished = (job) => Boolean(job.dateFinished)

async function start (consumer, envId, rawcode) {
  const startedAt = Date.now()
  const answer = await ProviderInstance.freeComputeStart(
    nodeUri, consumer, envId, datasets, algorithm(rawcode)
  )
  // freeComputeStart answers null when the root document has no freeCompute route.
  if (answer === null) throw new Error('freeComputeStart answered null (see the log above)')
  return { started_at: startedAt, answer_is_array: Array.isArray(answer), job: first(answer) }
}

// One result through getComputeResult, whole and from an offset (a Range request).
async function result (consumer, jobId, entry, offset) {
  const whole = await read(
    await ProviderInstance.getComputeResult(nodeUri, consumer, jobId, entry.index)
  )
  const tail = await read(
    await ProviderInstance.getComputeResult(nodeUri, consumer, jobId, entry.index, offset)
  )
  return {
    entry,
    length: whole.length,
    base64: whole.toString('base64'),
    offset,
    offset_length: tail.length,
    offset_base64: tail.toString('base64')
  }
}

// The job's signed receipt, and who signed it as ethers sees it: EIP-191 personal_sign
// over DSSE's pre-authentication encoding of the payload.
async function receipt (consumer, jobId, entry) {
  const whole = await read(
    await ProviderInstance.getComputeResult(nodeUri, consumer, jobId, entry.index)
  )
  const envelope = JSON.parse(whole.toString('utf8'))
  const payload = Buffer.from(envelope.payload, 'base64')
  const type = Buffer.from(envelope.payloadType, 'utf8')
  const pae = Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload
  ])
  const sig = ethers.hexlify(Buffer.from(envelope.signatures[0].sig, 'base64'))
  return { base64: whole.toString('base64'), ethers_signer: ethers.verifyMessage(pae, sig) }
}

async function results (consumer, job) {
  const entries = job.results || []
  const tar = entries.find((r) => String(r.filename).includes('.tar'))
  const log = entries.find((r) => r.type === 'algorithmLog')
  const signed = entries.find((r) => r.filename === 'receipt.json')
  if (!tar || !log || !signed) {
    throw new Error(`no .tar, algorithm log or receipt in ${JSON.stringify(job)}`)
  }
  return {
    tar: await result(consumer, job.jobId, tar, 512),
    log: await result(consumer, job.jobId, log, 10),
    receipt: await receipt(consumer, job.jobId, signed)
  }
}

async function streamLogs (consumer, jobId) {
  const openedAt = Date.now()
  const stream = await ProviderInstance.computeStreamableLogs(nodeUri, consumer, jobId)
  const logs = { opened_at: openedAt, answered_at: Date.now(), chunks: [] }
  if (stream === null) {
    // The library logged the server's refusal and answered null.
    logs.stream = null
    return logs
  }
  const decoder = new TextDecoder()
  for await (const chunk of stream) {
    logs.chunks.push({ at: Date.now(), text: decoder.decode(chunk, { stream: true }) })
  }
  logs.closed_at = Date.now()
  logs.text = logs.chunks.map((c) => c.text).join('')
  return logs
}

async function flow () {
  const wallet = new ethers.Wallet(key) // no provider: no chain, no RPC
  const address = await wallet.getAddress()
  const manifest = JSON.parse(
    fs.readFileSync(path.join(modulesDir, 'node_modules/@oceanprotocol/lib/package.json'))
  )
  out.lib_version = manifest.version
  out.ethers_version = ethers.version
  out.address = address

  // 1. Environments: a paid one is listed first, without `free`; pick the free one.
  const envs = await ProviderInstance.getComputeEnvironments(nodeUri)
  out.environments = envs
  const env = envs.find((e) => e.free)
  if (!env) throw new Error(`no environment with a free tier: ${JSON.stringify(envs)}`)
  out.env_id = env.id
  out.nonce = await ProviderInstance.getNonce(nodeUri, address)
  if (mode === 'queue') return queued(wallet, env)

  // 2. The main job, signed by the wallet.
  const main = await start(wallet, env.id, MAIN_ALGORITHM)
  out.started = main
  const jobId = main.job.jobId
  const seen = []
  out.statuses = seen
  if (mode === 'full') {
    // Its log streams while it runs: each chunk with the time it arrived.
    const running = await poll(wallet, jobId, isRunning, RUNNING, seen)
    out.running = { at: running.at, job: running.job }
    out.logs = await streamLogs(wallet, jobId)
  }
  const done = await poll(wallet, jobId, isFinished, 'dateFinished', seen)
  out.finished_at = done.at
  out.done = done.job
  out.results = await results(wallet, done.job)
  out.nonce_after = await ProviderInstance.getNonce(nodeUri, address)
  if (mode !== 'full') return

  // 3. A long job stops when asked while it runs.
  const long = await start(wallet, env.id, LONG_ALGORITHM)
  const stopSeen = []
  const stop = { started: long, statuses: stopSeen }
  out.stop = stop
  const longRunning = await poll(wallet, long.job.jobId, isRunning, RUNNING, stopSeen)
  stop.running = { at: longRunning.at, job: longRunning.job }
  stop.asked_at = Date.now()
  stop.answer = await ProviderInstance.computeStop(long.job.jobId, nodeUri, wallet)
  stop.answered_at = Date.now()
  const stopped = await poll(wallet, long.job.jobId, isFinished, 'dateFinished', stopSeen)
  stop.finished_at = stopped.at
  stop.done = stopped.job

  // 4. An auth token (as the VS Code extension uses): start, status and results with it,
  // then invalidated, and refused.
  const token = await ProviderInstance.generateAuthToken(wallet, nodeUri)
  const auth = { token, payload: jwtPayload(token) }
  out.token = auth
  const tokenJob = await start(token, env.id, TOKEN_ALGORITHM)
  auth.started = tokenJob
  auth.status = await ProviderInstance.computeStatus(nodeUri, token, tokenJob.job.jobId)
  const tokenSeen = []
  auth.statuses = tokenSeen
  const tokenDone = await poll(token, tokenJob.job.jobId, isFinished, 'dateFinished', tokenSeen)
  auth.done = tokenDone.job
  // ocean.js sends neither a signature nor the token with a token-mode result request.
  const entry = (tokenDone.job.results || []).find((r) => String(r.filename).includes('.tar'))
  try {
    const bytes = await read(
      await ProviderInstance.getComputeResult(
        nodeUri, token, tokenJob.job.jobId, entry ? entry.index : 0
      )
    )
    auth.result = { ok: true, entry, length: bytes.length, base64: bytes.toString('base64') }
  } catch (error) {
    auth.result = { ok: false, entry, error: String(error.message || error) }
  }
  auth.invalidate = await ProviderInstance.invalidateAuthToken(wallet, token, nodeUri)
  try {
    const answer = await ProviderInstance.freeComputeStart(
      nodeUri, token, env.id, datasets, algorithm(TOKEN_ALGORITHM)
    )
    auth.after_invalidate = { threw: false, answer }
  } catch (error) {
    auth.after_invalidate = { threw: true, error: String(error.message || error) }
  }
}

// 5. queueMaxWaitTime: the 12th argument of 8.6.2's freeComputeStart.
async function queued (wallet, env) {
  const holders = []
  for (let i = 0; i < env.maxJobs; i++) holders.push(await start(wallet, env.id, LONG_ALGORITHM))
  for (const holder of holders) {
    await poll(wallet, holder.job.jobId, isRunning, RUNNING, [])
  }
  const queue = { max_wait: 2, asked_at: Date.now() }
  out.queue = queue
  const answer = await ProviderInstance.freeComputeStart(
    nodeUri, wallet, env.id, datasets, algorithm('echo never'),
    undefined, undefined, undefined, undefined, undefined, undefined, queue.max_wait
  )
  queue.started = first(answer)
  const seen = []
  queue.statuses = seen
  const done = await poll(wallet, queue.started.jobId, isFinished, 'dateFinished', seen)
  queue.finished_at = done.at
  queue.done = done.job
  queue.holders_during = []
  for (const holder of holders) {
    queue.holders_during.push(
      first(await ProviderInstance.computeStatus(nodeUri, wallet, holder.job.jobId))
    )
    await ProviderInstance.computeStop(holder.job.jobId, nodeUri, wallet)
  }
  for (const holder of holders) {
    await poll(wallet, holder.job.jobId, isFinished, 'dateFinished', [])
  }
}

flow()
  .catch((error) => {
    out.error = String(error && error.stack ? error.stack : error)
    console.error(error)
    process.exitCode = 1
  })
  .finally(() => fs.writeFileSync(report, JSON.stringify(out, null, 1)))
