/**
 * Essay-style haystack for the niah tasks. RULER fills its essay haystack with Paul Graham's essays,
 * which this project cannot ship; instead this module generates plain English prose: sentence
 * templates (below) filled with words from the shipped lists in words.ts (nouns, adjectives,
 * verbs, adverbs), drawn by a PRNG with a fixed seed. The text is therefore the same for every
 * sample and every run (as RULER's essay is), it is grammatical but meaningless, it holds no digits
 * and no hyphenated pairs (so nothing in it looks like a needle's key or value), and it grows on
 * demand to any length. RULER collapses the essays' whitespace into single spaces, so paragraphs
 * do not survive into the haystack; the generator yields one long run of sentences.
 */
import { Rng } from './rng.ts';
import { ADJECTIVES, ADVERBS, NOUNS, VERBS, plural, thirdPerson } from './words.ts';

// {N} noun, {Ns} plural noun, {A} adjective, {V} verb, {V3} third-person verb, {R} adverb.
const TEMPLATES: readonly string[] = [
  'The {A} {N} {V3} the {N} {R}.',
  'Most {Ns} {V} {Ns} when nobody is watching.',
  'When you {V} a {N}, you also {V} the {N} behind it.',
  'It is {A} to {V} a {N} before you {V} the {N}.',
  'I think {Ns} are {A} because they {V} {A} {Ns}.',
  'That is why the {N} {V3} so {R}.',
  'A {N} is {A} when it {V3} the {A} {N}.',
  'There are many {A} {Ns} in a {A} {N}.',
  'What {V3} a {N} {A}?',
  'If a {N} {V3} {Ns}, the {N} will {V} {R}.',
  'People who {V} {Ns} rarely {V} {Ns}.',
  'The question is whether {Ns} {V} {A} {Ns}.',
  'You can {V} {Ns} without a {N}.',
  'In the {A} {N}, every {N} {V3} a {N}.',
  'So the {A} {Ns} {V} {R}, and the {Ns} {V} too.',
  'But nobody {V3} the {N} of a {A} {N}.',
  'This {N} is more {A} than that {N}.',
  'Eventually the {N} {V3} {R}.',
  'Why do {A} {Ns} {V} {Ns}?',
  'The best way to {V} a {N} is to {V} it {R}.',
  'Few {Ns} are as {A} as a {A} {N}.',
  'You should {V} the {N} and then {V} the {N}.',
  'Every {N} I know {V3} {Ns} {R}.',
  'The {Ns} of the {N} seem {A} at first.',
  'Nobody expected the {N} to {V} the {A} {N}.',
  'Sometimes a {A} {N} {V3} more than a {A} {N}.',
  'Good {Ns} {V} {Ns}; {A} {Ns} {V} {Ns}.',
  'That was the {A} part of the {N}.',
  'Once the {N} {V3} the {N}, the rest is {A}.',
  'Startups that {V} {Ns} tend to {V} {R}.',
  'The {N} does not {V} the {N}; it {V3} the {N}.',
  'Ask any {N} and it will {V} a {A} {N}.',
];

const CORPUS_SEED = 0x0e55a7;
const sentences: string[][] = [];
const wordsBefore: number[] = [0];   // wordsBefore[i] = words in sentences[0..i)
const rng = new Rng(CORPUS_SEED);

function fillSlot(slot: string): string {
  switch (slot) {
    case 'N': return rng.choice(NOUNS);
    case 'Ns': return plural(rng.choice(NOUNS));
    case 'A': return rng.choice(ADJECTIVES);
    case 'V': return rng.choice(VERBS);
    case 'V3': return thirdPerson(rng.choice(VERBS));
    case 'R': return rng.choice(ADVERBS);
    default: throw new Error(`unknown essay slot {${slot}}`);
  }
}

function nextSentence(): string[] {
  const filled = rng.choice(TEMPLATES).replace(/\{(\w+)\}/g, (_, slot: string) => fillSlot(slot));
  const words = filled.split(' ');
  // "a" before a vowel-initial word reads as "an".
  for (let i = 0; i + 1 < words.length; i++) {
    if ((words[i] === 'a' || words[i] === 'A') && /^[aeiou]/.test(words[i + 1]!)) words[i] += 'n';
  }
  words[0] = words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1);
  return words;
}

/** Total words generated so far; grows as callers ask for more. */
function ensureWords(count: number): void {
  while (wordsBefore[wordsBefore.length - 1]! < count) {
    const s = nextSentence();
    sentences.push(s);
    wordsBefore.push(wordsBefore[wordsBefore.length - 1]! + s.length);
  }
}

/**
 * The first `wordCount` words of the essay, split into sentences (the last one cut short when the
 * count ends inside it), as RULER's sentence split of its truncated essay gives.
 */
export function essaySentences(wordCount: number): string[] {
  ensureWords(wordCount);
  const out: string[] = [];
  for (let i = 0; i < sentences.length && wordsBefore[i]! < wordCount; i++) {
    const take = Math.min(sentences[i]!.length, wordCount - wordsBefore[i]!);
    out.push(take === sentences[i]!.length ? sentences[i]!.join(' ') : sentences[i]!.slice(0, take).join(' '));
  }
  return out;
}
