'use strict'
// Random, realistic sign-up bodies for POST /users: a new one for every request.
//
// Built from small tables and a fast PRNG so that making a body costs far less than sending it:
// the load generator must never be what limits the figures. Names mix languages, apostrophes,
// hyphens and accents the way a real sign-up form sees them; the email and username are derived
// from the name in the usual ways (with the accents folded, since many providers refuse them).

const FIRST_NAMES = [
  'James', 'Mary', 'John', 'Patricia', 'Robert', 'Jennifer', 'Michael', 'Linda', 'William',
  'Elizabeth', 'David', 'Barbara', 'Richard', 'Susan', 'Joseph', 'Jessica', 'Thomas', 'Sarah',
  'Charles', 'Karen', 'Christopher', 'Nancy', 'Daniel', 'Lisa', 'Matthew', 'Betty', 'Anthony',
  'Margaret', 'Mark', 'Sandra', 'Donald', 'Ashley', 'Steven', 'Kimberly', 'Paul', 'Emily',
  'Andrew', 'Donna', 'Joshua', 'Michelle', 'Kenneth', 'Carol', 'Kevin', 'Amanda', 'Brian',
  'Melissa', 'George', 'Deborah', 'Timothy', 'Stephanie', 'Olivia', 'Liam', 'Emma', 'Noah',
  'Ava', 'Sophia', 'Isabella', 'Mia', 'Lucas', 'Amelia', 'Harper', 'Ethan', 'Evelyn', 'Mason',
  'Chloé', 'Zoë', 'José', 'Álvaro', 'Sofía', 'Mateo', 'Valentina', 'Santiago', 'Camila',
  'Léa', 'Hugo', 'Inès', 'Louis', 'Manon', 'Élodie', 'François', 'Jürgen', 'Lukas', 'Anna',
  'Björn', 'Søren', 'Ingrid', 'Astrid', 'Łukasz', 'Małgorzata', 'Jakub', 'Zofia', 'Tomáš',
  'Eszter', 'Ioana', 'Dmitri', 'Olga', 'Nikolai', 'Yulia', 'Giulia', 'Lorenzo', 'Francesca',
  'Matteo', 'Chiara', 'João', 'Beatriz', 'Gonçalo', 'Aoife', 'Siobhán', 'Seán', 'Niamh',
  'Priya', 'Arjun', 'Ananya', 'Rohan', 'Aisha', 'Omar', 'Fatima', 'Yusuf', 'Layla', 'Mehmet',
  'Elif', 'Wei', 'Mei', 'Hiroshi', 'Yuki', 'Haruto', 'Sakura', 'Min-jun', 'Ji-woo', 'Seo-yeon',
  'Nguyen', 'Linh', 'Kwame', 'Ama', 'Chidi', 'Ngozi', 'Thabo', 'Zanele', 'Kofi', 'Amara',
  'Mary-Kate', 'Jean-Luc', 'Anne-Marie', 'Kai', 'River', 'Alex', 'Sam', 'Jordan', 'Taylor'
]

const LAST_NAMES = [
  'Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez',
  'Martinez', 'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson', 'Thomas', 'Taylor',
  'Moore', 'Jackson', 'Martin', 'Lee', 'Perez', 'Thompson', 'White', 'Harris', 'Sanchez',
  'Clark', 'Ramirez', 'Lewis', 'Robinson', 'Walker', 'Young', 'Allen', 'King', 'Wright',
  'Scott', 'Torres', 'Nguyen', 'Hill', 'Flores', 'Green', 'Adams', 'Nelson', 'Baker', 'Hall',
  'Rivera', 'Campbell', 'Mitchell', 'Carter', "O'Brien", "O'Connor", "D'Angelo", 'McDonald',
  'MacLeod', 'Smith-Jones', 'García Márquez', 'Müller', 'Schmidt', 'Schneider', 'Fischer',
  'Weber', 'Schäfer', 'Dubois', 'Lefèvre', 'Moreau', 'Fontaine', 'Girard', 'Rossi', 'Russo',
  'Ferrari', 'Esposito', 'Bianchi', 'Romano', 'Silva', 'Santos', 'Oliveira', 'Pereira',
  'Fernández', 'González', 'Jiménez', 'Muñoz', 'Álvarez', 'Nowak', 'Kowalski', 'Wiśniewski',
  'Dvořák', 'Novák', 'Horváth', 'Popescu', 'Ivanov', 'Petrov', 'Smirnova', 'Jensen', 'Nielsen',
  'Hansen', 'Johansson', 'Andersson', 'Virtanen', 'Korhonen', 'Murphy', 'Kelly', 'Byrne',
  'Patel', 'Sharma', 'Singh', 'Kumar', 'Gupta', 'Khan', 'Ali', 'Hassan', 'Yılmaz', 'Kaya',
  'Demir', 'Wang', 'Li', 'Zhang', 'Liu', 'Chen', 'Sato', 'Suzuki', 'Takahashi', 'Tanaka',
  'Kim', 'Park', 'Choi', 'Tran', 'Pham', 'Mensah', 'Okafor', 'Adeyemi', 'Nkosi', 'Dlamini',
  'van der Berg', 'de Vries', 'van Dijk', 'Bakker', 'Janssen', 'Peeters', 'Van den Broeck'
]

const DOMAINS = [
  // Weighted by repetition: the big providers dominate real sign-ups.
  'gmail.com', 'gmail.com', 'gmail.com', 'gmail.com', 'gmail.com', 'gmail.com',
  'yahoo.com', 'yahoo.com', 'outlook.com', 'outlook.com', 'hotmail.com', 'hotmail.com',
  'icloud.com', 'icloud.com', 'proton.me', 'aol.com', 'gmx.de', 'web.de', 'orange.fr',
  'libero.it', 'yandex.ru', 'mail.ru', 'qq.com', '163.com', 'naver.com', 'yahoo.co.jp',
  'btinternet.com', 'comcast.net', 'fastmail.com', 'hey.com', 'example.org', 'acme-corp.com',
  'university.edu', 'startup.io'
]

const WORDS = [
  'sun', 'moon', 'star', 'wolf', 'fox', 'bear', 'tiger', 'river', 'stone', 'blue', 'red',
  'green', 'coffee', 'pixel', 'ninja', 'rocket', 'cloud', 'storm', 'lucky', 'happy', 'cool',
  'dev', 'code', 'gamer', 'music', 'travel', 'chef', 'runner', 'rider', 'photo', 'art'
]

const PASSWORD_CHARS = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!@#$%^&*-_=+?'

// xoshiro128**: cheaper than Math.random for the many draws a body needs; seeded from it (and
// from the process id and the clock) so that every run and every process differs.
let s0 = (Math.random() * 0x100000000) >>> 0 ^ process.pid
let s1 = (Math.random() * 0x100000000) >>> 0
let s2 = (Date.now() & 0xffffffff) >>> 0
let s3 = (Math.random() * 0x100000000) >>> 0 | 1

function next () {
  const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
  const t = s1 << 9
  s2 ^= s0
  s3 ^= s1
  s1 ^= s2
  s0 ^= s3
  s2 ^= t
  s3 = rotl(s3, 11)
  return result
}

function rotl (x, k) {
  return (x << k) | (x >>> (32 - k))
}

function below (n) {
  return next() % n
}

function pick (list) {
  return list[below(list.length)]
}

const foldCache = new Map()

// 'Zoë García Márquez' -> 'zoe', 'garciamarquez': what most people type into an address.
function fold (name) {
  let folded = foldCache.get(name)
  if (folded === undefined) {
    folded = name.normalize('NFD').replace(/[\u0300-\u036f]/g, '')
      .replace(/ł/g, 'l').replace(/Ł/g, 'L').replace(/ø/g, 'o').replace(/ı/g, 'i')
      .toLowerCase().replace(/[^a-z0-9]/g, '')
    foldCache.set(name, folded)
  }
  return folded
}

function birthYear () {
  return 1950 + below(58)
}

function emailLocalPart (first, last) {
  const f = fold(first)
  const l = fold(last)
  switch (below(9)) {
    case 0: return `${f}.${l}`
    case 1: return `${f}${l}`
    case 2: return `${f[0]}${l}`
    case 3: return `${f}.${l}${below(100)}`
    case 4: return `${f}_${l}`
    case 5: return `${f}${birthYear()}`
    case 6: return `${l}.${f}`
    case 7: return `${f}.${l}+${pick(WORDS)}`
    default: return `${f}${l}${below(10000)}`
  }
}

function username (first, last) {
  const f = fold(first)
  const l = fold(last)
  switch (below(7)) {
    case 0: return `${f}_${l}`
    case 1: return `${f}${l}${below(1000)}`
    case 2: return `${f[0]}${l}`
    case 3: return `${pick(WORDS)}_${pick(WORDS)}${below(100)}`
    case 4: return `${f}.${l}`
    case 5: return `${f}${birthYear() % 100}`
    default: return `${l}${f[0]}${below(100000)}`
  }
}

function password () {
  if (below(4) === 0) {
    // A passphrase, as password managers and careful people make them.
    return `${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}-${below(100)}`
  }
  const length = 10 + below(15)
  let out = ''
  for (let i = 0; i < length; i++) out += PASSWORD_CHARS[below(PASSWORD_CHARS.length)]
  return out
}

// One sign-up: { firstName, lastName, email, username, password }.
function makeUser () {
  const firstName = pick(FIRST_NAMES)
  const lastName = pick(LAST_NAMES)
  return {
    firstName,
    lastName,
    email: `${emailLocalPart(firstName, lastName)}@${pick(DOMAINS)}`,
    username: username(firstName, lastName),
    password: password()
  }
}

module.exports = { makeUser }

if (require.main === module) {
  // `node signup.js [N]` prints N sample bodies: a quick look at what the benchmark sends.
  const n = Number(process.argv[2] || 5)
  for (let i = 0; i < n; i++) console.log(JSON.stringify(makeUser()))
}
