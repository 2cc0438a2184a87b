// Entry point: every kernel the runtime calls. Parallel kernels end with (start, end).
export { setThreadScratch, heapBase } from './common';
export { gemmF32, gemvF32, sumF32 } from './gemm';
export { quantizeQ8Rows, quantizeActQ8, gemmQ8, gemmQ8Many } from './quant';
export { rmsnorm } from './norm';
export { rope } from './rope';
export { siluMul, add } from './activation';
export { softmax } from './softmax';
export { attnCausal, attendPaged, attendPagedPart, attendMerge } from './attention';
export { pageSoftmaxSum, hybridSelect, hybridSelectJobs, hybridSelectScratch, questSelect, questSelectScratch } from './select';
export { peakMadd, peakMaddMacs, peakDot, peakDotMacs, peakDotRelaxed, peakDotRelaxedMacs } from './peak';
