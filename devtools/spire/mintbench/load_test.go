package main

import (
	"testing"
	"time"
)

func TestParsePhasesReadsRatesAndSeconds(t *testing.T) {
	phases, err := parsePhases("20@60, 40@0.5")
	if err != nil {
		t.Fatal(err)
	}
	want := []phase{{rate: 20, duration: time.Minute}, {rate: 40, duration: 500 * time.Millisecond}}
	if len(phases) != len(want) || phases[0] != want[0] || phases[1] != want[1] {
		t.Fatalf("got %+v, want %+v", phases, want)
	}
}

func TestParsePhasesRefusesWhatIsNotARateAtSeconds(t *testing.T) {
	for _, text := range []string{"20", "20@", "@60", "0@60", "20@-1", "x@60"} {
		if _, err := parsePhases(text); err == nil {
			t.Errorf("%q was accepted", text)
		}
	}
}
