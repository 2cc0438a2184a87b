/**
 * Word lists for the RULER generators, shipped with the project (written for it, not downloaded).
 * RULER draws needle keys from wonderwords' adjective x noun lists and cwe words from its nouns,
 * adjectives and verbs (then a large English word list when more are needed); these are smaller
 * plain-English stand-ins. Keys are `adjective-noun` pairs (ADJECTIVES x NOUNS, tens of thousands).
 * When a cwe list needs more distinct words than the shipped ones, `pseudoWords` generates
 * pronounceable made-up words from a fixed seed, in the role of RULER's larger word list.
 * The essay prose generator (essay.ts) reuses these lists with ADVERBS.
 */
import { Rng } from './rng.ts';

const split = (s: string): readonly string[] => Object.freeze(s.trim().split(/\s+/));

export const ADJECTIVES = split(`
  able absent active actual afraid agile alert alive amber ample ancient angry annual anxious
  aware awful bald bare basic bitter blank bland blind blond blue bold bored bouncy brave brief
  bright brisk broad broken brown bulky busy calm candid careful casual cautious cheap cheerful
  chilly civil classic clean clear clever close cloudy clumsy coarse cold common complex cool
  copper correct cosmic costly cozy crazy creamy crisp crooked cruel crude cubic curious curly
  cute damp dapper daring dark dear decent deep defiant dense devout direct dirty distant dizzy
  dreary dry dull dusty eager early earnest easy elastic elated elegant empty endless epic equal
  exact exotic expert faded faint fair faithful famous fancy fast fearless feeble fierce filthy
  final fine firm fixed flaky flat flawed fluffy fond foolish formal fragile frail frank free
  fresh friendly frosty frozen frugal full funny fuzzy gentle genuine giant gifted glad gloomy
  glossy golden good graceful grand grateful great greedy green grim gritty grumpy guilty handy
  happy hardy harsh hasty healthy heavy helpful hidden high hollow holy honest hopeful huge humble
  hungry icy ideal idle immense innocent inner intense ironic jagged jealous jolly joyful juicy
  keen kind lame large lasting late lazy lean legal level light likely linear little lively
  lonely long loose loud lovely loyal lucky lunar magic major mature meager mellow merry messy
  mighty mild minor misty mixed modern modest moist moral muddy murky narrow native natural neat
  nervous neutral new nice nimble noble noisy normal novel numb odd official oily olive open
  orange ordinary organic outer oval pale patient peaceful perfect petty plain pleasant plucky
  plump polite poor popular portly precious pretty prickly primary prime private proper proud
  public pure purple quick quiet radiant rapid rare raw ready real regular remote rich rigid ripe
  robust rocky rosy rough round royal rude rural rustic sacred salty sandy scarce secret secure
  serene severe shabby shaggy shallow sharp shiny short shy silent silky silly silver simple
  sincere skinny sleek slender slim slow small smart smooth snowy soft solar solid somber sour
  spare sparkling special speedy spicy spotty stable stale steady steep sticky stiff stormy
  strange strict striped strong sturdy subtle sudden sunny super superb sweet swift tall tame
  tangible tender tense thick thin thirsty tidy tight tiny tired total tough tragic tranquil
  tricky trim tropical true trusty twin typical ugly unique upbeat upper urban usable useful
  utter vacant vague valid vast velvet vibrant vital vivid warm wary weak wealthy weary wet
  whole wicked wide wild windy wise witty wooden worthy young zany zealous
`);

export const NOUNS = split(`
  acorn actor anchor angle animal ankle answer apple apron arch area arm arrow artist atlas attic
  author avenue baker balcony ball balloon banana band bank barn barrel basket beach beacon bean
  bear beard bed bell belt bench berry bicycle bird blanket blossom boat bone book boot bottle
  boulder bowl box bracelet branch bread brick bridge brook broom bubble bucket budget building
  bulb bundle butter button cabin cable cake camel camera canal candle canoe canyon captain car
  card carpet carrot castle cat cave ceiling cellar chain chair chalk channel chapter cheese
  cherry chimney chip circle city clerk cliff clock closet cloud coast coat coin collar comet
  compass cookie corner cottage cotton council country cousin cow crane crayon creek cricket crown
  cup curtain cushion dancer desert desk diamond dinner doctor dog dolphin door dragon drawer
  dream dress drum duck eagle earth editor egg elbow elephant engine envelope eraser factory
  falcon farm farmer feather fence ferry field finger fire fish flag flame flower flute fog
  forest fork fountain fox frame friend frog fruit galaxy garden gate gem giraffe glacier glass
  glove goat gold grape grass guitar hammer harbor harvest hat hawk helmet hill hive horizon
  horse hospital hotel house island jacket jar jewel journal jungle kettle key king kitchen kite
  kitten ladder lake lamp lantern laptop lawyer lemon letter library lighthouse lily lion lizard
  lock locket magnet mailbox map marble market meadow melon mirror monkey moon mountain museum
  napkin needle nest notebook novel oak ocean office onion orange orchard otter oven owl painter
  palace pancake panda paper parade parrot pasture path peach pear pebble pencil pepper piano
  picture pillow pilot pine planet plate pocket poem pond pony prairie puzzle quilt rabbit
  radio raft rainbow ranch raven record ribbon ring river road robot rocket roof room rope rose
  saddle sailor salad sand sandal satellite scarf school sea season shadow shell ship
  shirt shoe shovel singer sink sister skirt sky sled slipper snail snake sock sofa soldier song
  spider spoon square squirrel stable stadium stamp star station statue stone storm stove stream
  street student sugar suitcase summit sun sweater table tablet teacher temple tent theater
  thunder ticket tiger timber toast tower town toy tractor train tree trophy truck trumpet
  tulip tunnel turtle umbrella valley vase village violin volcano wagon wall wallet walnut
  wardrobe watch water wave whale wheel whistle window wizard
`);

/** Base forms whose third-person form follows the regular -s/-es/-ies rule. */
export const VERBS = split(`
  accept add admire allow answer appear arrange arrive ask attach avoid bake balance believe
  borrow bring build calculate call carry change check choose clean climb collect compare
  complete consider contain copy count cover create decide defend deliver describe design
  develop discover discuss divide draw drop earn enjoy enter examine expect explain explore
  fill find finish fix follow gather guide handle help hold imagine improve include invent
  join jump keep kick know learn lift like listen live load look love make manage mark measure
  mend mention move need notice obtain offer open order organize own paint pass plan plant play
  prefer prepare present produce protect pull push question reach read receive recommend record
  reduce remember repair repeat replace report request rescue return save search select sell
  send share show sign solve sort start stay study suggest supply support surprise test thank
  think touch trade train travel trust turn understand use value visit wait walk want watch
  weigh win wonder work write
`);

export const ADVERBS = split(`
  quickly slowly carefully quietly easily rarely often always usually clearly simply gently
  openly boldly calmly closely deeply fairly freely gladly greatly honestly kindly largely
  mostly nearly neatly plainly poorly proudly rapidly readily really safely seldom sharply
  silently smoothly softly steadily strongly surely swiftly truly warmly widely wisely
`);

/** Plural of a noun from NOUNS (only regular nouns are shipped). */
export function plural(noun: string): string {
  if (/(s|x|z|ch|sh)$/.test(noun)) return `${noun}es`;
  if (/[^aeiou]y$/.test(noun)) return `${noun.slice(0, -1)}ies`;
  return `${noun}s`;
}

/** Third-person singular of a verb from VERBS. */
export function thirdPerson(verb: string): string { return plural(verb); }

let keyWords: readonly string[] | undefined;
/** Every distinct `adjective-noun` key, sorted (RULER builds its key list the same way). */
export function keyWordList(): readonly string[] {
  if (!keyWords) {
    const set = new Set<string>();
    for (const a of ADJECTIVES) for (const n of NOUNS) set.add(`${a}-${n}`);
    keyWords = Object.freeze([...set].sort());
  }
  return keyWords;
}

let cweWords: readonly string[] | undefined;
/** The shipped nouns, adjectives and verbs, deduplicated and sorted: cwe's first word pool. */
export function shippedWordPool(): readonly string[] {
  if (!cweWords) cweWords = Object.freeze([...new Set([...NOUNS, ...ADJECTIVES, ...VERBS])].sort());
  return cweWords;
}

const ONSETS = ['b', 'c', 'd', 'f', 'g', 'h', 'j', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'w', 'z',
  'br', 'cl', 'dr', 'fl', 'gr', 'pl', 'st', 'tr', 'sh', 'ch', 'th', 'sp'];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ou', 'oo', 'ie'];
const CODAS = ['', '', '', 'n', 'r', 's', 'l', 'm', 't', 'nd', 'st', 'ck'];
const pseudo: string[] = [];
const pseudoSeen = new Set<string>();
const pseudoRng = new Rng(0x5eed_0001);

/** The first `count` made-up words of a fixed sequence (2-3 syllables, distinct, none a shipped word). */
export function pseudoWords(count: number): readonly string[] {
  if (pseudoSeen.size === 0) for (const w of shippedWordPool()) pseudoSeen.add(w);
  while (pseudo.length < count) {
    const syllables = 2 + (pseudoRng.nextU32() % 2);
    let w = '';
    for (let s = 0; s < syllables; s++) w += pseudoRng.choice(ONSETS) + pseudoRng.choice(VOWELS) + pseudoRng.choice(CODAS);
    if (pseudoSeen.has(w)) continue;
    pseudoSeen.add(w);
    pseudo.push(w);
  }
  return pseudo;
}
