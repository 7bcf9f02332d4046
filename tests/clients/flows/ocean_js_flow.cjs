// The compute flow through ocean.js's own `ProviderInstance` (@oceanprotocol/lib 3.x).
//
// Run by tests/clients/test_ocean_js.py with the machine's node, loading the library
// from the node_modules folder that the test built for one ocean.js version. It calls
// the client's API as a user would, writes what each call answered to the report file
// (JSON), and lets any error surface with the client's own stack; the test asserts on
// the report.
//
//   node ocean_js_flow.cjs REPORT MODULES_DIR PROVIDER KEY DID IMAGE:TAG full|short
'use strict'

const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')

const [report, modules, providerUri, key, did, imageRef, mode] = process.argv.slice(2)
const load = createRequire(path.join(path.resolve(modules), 'package.json'))
const { ProviderInstance } = load('@oceanprotocol/lib')
const { ethers } = load('ethers')

const CHAIN_ID = 8996
const FINAL = [31, 32, 70]
const MAIN_ALGORITHM =
  'echo "ocean.js was here"; ' +
  'for f in /data/inputs/*/0; do cat "$f"; done > "$OUTPUTS/copy.txt"'
const [image, tag] = imageRef.split(':')
const out = {}

function algorithm (rawcode) {
  return {
    meta: {
      rawcode,
      language: 'sh',
      version: '0.1',
      container: { entrypoint: 'sh $ALGO', image, tag: tag || 'latest', checksum: '' }
    }
  }
}

function first (answer) {
  return Array.isArray(answer) ? answer[0] : answer
}

async function wait (address, jobId, until = FINAL) {
  const deadline = Date.now() + 90000
  let job
  while (Date.now() < deadline) {
    job = first(await ProviderInstance.computeStatus(providerUri, address, jobId, did))
    if (until.includes(job.status)) return job
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`job ${jobId} did not reach ${until}: ${JSON.stringify(job)}`)
}

async function start (signer, envId, rawcode) {
  const asset = { documentId: did, serviceId: '0', transferTxId: '0x' + 'ab'.repeat(32) }
  const answer = await ProviderInstance.computeStart(
    providerUri, signer, envId, asset, algorithm(rawcode)
  )
  // computeStart answers null on any refusal; the library has logged the server's reason.
  if (answer === null) throw new Error('computeStart answered null (refused: see the log above)')
  return first(answer)
}

async function flow () {
  // signProviderRequest asks the signer for its chain id: a static network answers it
  // without any RPC node, as in a wallet connected to a local chain.
  const network = new ethers.providers.StaticJsonRpcProvider('http://127.0.0.1:9', {
    chainId: CHAIN_ID,
    name: 'localcompute-test'
  })
  const signer = new ethers.Wallet(key, network)
  const address = await signer.getAddress()

  // 1. The environments keyed by chain; the free one is what a consumer picks.
  const envs = await ProviderInstance.getComputeEnvironments(providerUri)
  out.environments = envs
  const env = envs[CHAIN_ID].find((e) => e.priceMin === 0)
  out.env_id = env.id

  if (mode === 'full') {
    out.initialize = await ProviderInstance.initializeCompute(
      [{ documentId: did, serviceId: '0' }],
      algorithm(MAIN_ALGORITHM),
      env.id,
      Math.floor(Date.now() / 1000) + 3600,
      providerUri,
      address
    )
  }

  // 2. One job: start, status until final, every result through its signed URL.
  const started = await start(signer, env.id, MAIN_ALGORITHM)
  out.started = started
  const done = await wait(address, started.jobId)
  out.done = done
  out.results = []
  for (let i = 0; i < done.results.length; i++) {
    const url = await ProviderInstance.getComputeResultUrl(providerUri, signer, started.jobId, i)
    const response = await fetch(url)
    const bytes = Buffer.from(await response.arrayBuffer())
    out.results.push({
      ...done.results[i],
      http_status: response.status,
      disposition: response.headers.get('content-disposition'),
      bytes: bytes.toString('base64')
    })
  }
  if (mode !== 'full') {
    // Stop of the finished job: it changes nothing, or is refused (see the test).
    try {
      out.stop_finished = await ProviderInstance.computeStop(
        did, address, started.jobId, providerUri, signer
      )
    } catch (error) {
      out.stop_finished = { refused: String(error.message || error) }
    }
    return
  }

  // 3. A running job stops when asked; delete removes a job and its results.
  const sleeper = await start(signer, env.id, 'sleep 60')
  out.sleeper_running = await wait(address, sleeper.jobId, [40, ...FINAL])
  out.stop_running = await ProviderInstance.computeStop(
    did, address, sleeper.jobId, providerUri, signer
  )
  out.stopped = await wait(address, sleeper.jobId)
  out.delete = await ProviderInstance.computeDelete(did, signer, started.jobId, providerUri)
  out.after_delete = first(
    await ProviderInstance.computeStatus(providerUri, address, started.jobId, did)
  )
  const again = await ProviderInstance.getComputeResultUrl(providerUri, signer, started.jobId, 0)
  const gone = await fetch(again)
  out.result_after_delete = { http_status: gone.status, body: await gone.text() }
  out.delete_stopped = await ProviderInstance.computeDelete(did, signer, sleeper.jobId, providerUri)
}

flow()
  .catch((error) => {
    out.error = String(error && error.stack ? error.stack : error)
    console.error(error)
    process.exitCode = 1
  })
  .finally(() => fs.writeFileSync(report, JSON.stringify(out, null, 1)))
